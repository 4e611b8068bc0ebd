-- A user lists only their own notifications (newest first): look them up
-- by customer without scanning every notification.
CREATE INDEX ix_notifications_customer ON notifications (customer_id, id);
