-- Notifications sent for OrderPlacedEvents: one row per event, whatever the redeliveries.
CREATE TABLE notifications (
    id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    -- The event's id: the idempotency key. A redelivered event hits the unique key.
    event_id         CHAR(36)        NOT NULL,
    order_number     VARCHAR(64)     NOT NULL,
    customer_id      VARCHAR(255)    NOT NULL,
    -- The e-mail address, when the event carried one.
    recipient        VARCHAR(320)    NULL,
    subject          VARCHAR(255)    NOT NULL,
    body             MEDIUMTEXT      NOT NULL,
    total            DECIMAL(19, 4)  NOT NULL,
    -- Where the event was read, for tracing a notification back to its message.
    source_topic     VARCHAR(249)    NOT NULL,
    source_partition INT             NOT NULL,
    source_offset    BIGINT          NOT NULL,
    occurred_at      DATETIME(6)     NOT NULL,
    sent_at          DATETIME(6)     NOT NULL,
    PRIMARY KEY (id),
    CONSTRAINT uk_notifications_event_id UNIQUE (event_id),
    INDEX ix_notifications_order_number (order_number, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_unicode_ci;
