-- Stock per SKU and reservations of stock for orders.
--
-- `inventory.quantity` is what is still available. A reservation takes
-- stock away at once (conditional UPDATE ... WHERE quantity >= ?), so the
-- CHECK constraint is a second line of defence: whatever the code does,
-- the database never stores a negative stock.

CREATE TABLE inventory (
    sku_code   VARCHAR(64) NOT NULL,
    quantity   INT         NOT NULL,
    updated_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (sku_code),
    CONSTRAINT inventory_quantity_not_negative CHECK (quantity >= 0)
) ENGINE = InnoDB;

-- One row per order number, whatever happened to it: RESERVED (stock
-- taken), REJECTED (not enough stock; `detail` says which SKUs) or
-- RELEASED (given back, or released before it was ever reserved, so that a
-- late reservation for a cancelled order cannot take stock).
CREATE TABLE reservations (
    order_number VARCHAR(64) NOT NULL,
    status       VARCHAR(16) NOT NULL,
    detail       TEXT        NULL,
    created_at   DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    released_at  DATETIME(6) NULL,
    PRIMARY KEY (order_number),
    CONSTRAINT reservations_status_known CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED'))
) ENGINE = InnoDB;

CREATE TABLE reservation_lines (
    order_number VARCHAR(64) NOT NULL,
    sku_code     VARCHAR(64) NOT NULL,
    quantity     INT         NOT NULL,
    PRIMARY KEY (order_number, sku_code),
    CONSTRAINT reservation_lines_quantity_positive CHECK (quantity > 0),
    CONSTRAINT reservation_lines_reservation FOREIGN KEY (order_number) REFERENCES reservations (order_number)
) ENGINE = InnoDB;
