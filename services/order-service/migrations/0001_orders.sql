-- Orders, their lines, the transactional outbox and idempotency keys.
--
-- An order and its OrderPlacedEvent (an outbox row) are written in one
-- transaction; the relay publishes unsent outbox rows to Kafka and marks
-- them sent after the broker acknowledged them. Prices are exact decimals.

CREATE TABLE orders (
    id             BIGINT        NOT NULL AUTO_INCREMENT,
    order_number   VARCHAR(64)   NOT NULL,
    status         VARCHAR(16)   NOT NULL,
    customer_id    VARCHAR(255)  NOT NULL,
    customer_email VARCHAR(320)  NULL,
    customer_name  VARCHAR(255)  NULL,
    total          DECIMAL(19,2) NOT NULL,
    created_at     DATETIME(6)   NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY orders_order_number (order_number),
    CONSTRAINT orders_total_not_negative CHECK (total >= 0)
) ENGINE = InnoDB;

CREATE TABLE order_lines (
    order_id BIGINT        NOT NULL,
    line_no  INT           NOT NULL,
    sku_code VARCHAR(64)   NOT NULL,
    price    DECIMAL(19,2) NOT NULL,
    quantity INT           NOT NULL,
    PRIMARY KEY (order_id, line_no),
    CONSTRAINT order_lines_order FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT order_lines_quantity_positive CHECK (quantity > 0),
    CONSTRAINT order_lines_price_not_negative CHECK (price >= 0)
) ENGINE = InnoDB;

-- `headers` is a JSON object of Kafka header name to value (the events
-- crate's headers); `trace_context` a JSON object of propagation headers
-- (traceparent, b3) captured when the order was placed, added to the
-- message so the consumer's spans join the order's trace.
CREATE TABLE outbox (
    id            BIGINT       NOT NULL AUTO_INCREMENT,
    event_id      CHAR(36)     NOT NULL,
    topic         VARCHAR(255) NOT NULL,
    message_key   VARCHAR(255) NOT NULL,
    payload       LONGTEXT     NOT NULL,
    headers       TEXT         NOT NULL,
    trace_context TEXT         NULL,
    created_at    DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    sent_at       DATETIME(6)  NULL,
    attempts      INT          NOT NULL DEFAULT 0,
    last_error    TEXT         NULL,
    PRIMARY KEY (id),
    UNIQUE KEY outbox_event_id (event_id),
    KEY outbox_unsent (sent_at, id)
) ENGINE = InnoDB;

-- One row per Idempotency-Key, inserted before the order is attempted:
-- the primary key makes concurrent replays of one key wait for the first
-- attempt instead of creating a second order. The final answer (status and
-- body) is stored in the order's own transaction.
CREATE TABLE idempotency_keys (
    idempotency_key VARCHAR(255) NOT NULL,
    request_hash    CHAR(64)     NOT NULL,
    order_number    VARCHAR(64)  NOT NULL,
    state           VARCHAR(16)  NOT NULL,
    response_status SMALLINT     NULL,
    response_body   MEDIUMTEXT   NULL,
    created_at      DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at      DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    PRIMARY KEY (idempotency_key),
    CONSTRAINT idempotency_keys_state_known CHECK (state IN ('IN_PROGRESS', 'DONE'))
) ENGINE = InnoDB;
