-- A user lists only their own orders (newest first): look them up by
-- customer without scanning every order.
CREATE INDEX orders_customer ON orders (customer_id, id);
