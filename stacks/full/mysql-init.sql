-- Run once by the official mysql image on first start (mounted into /docker-entrypoint-initdb.d/):
-- one database and one user per service, each user limited to its own database.
CREATE DATABASE IF NOT EXISTS inventory;
CREATE DATABASE IF NOT EXISTS orders;
CREATE DATABASE IF NOT EXISTS notifications;
CREATE USER IF NOT EXISTS 'inventory'@'%' IDENTIFIED BY 'inventory-secret';
CREATE USER IF NOT EXISTS 'orders'@'%' IDENTIFIED BY 'orders-secret';
CREATE USER IF NOT EXISTS 'notifications'@'%' IDENTIFIED BY 'notifications-secret';
GRANT ALL PRIVILEGES ON inventory.* TO 'inventory'@'%';
GRANT ALL PRIVILEGES ON orders.* TO 'orders'@'%';
GRANT ALL PRIVILEGES ON notifications.* TO 'notifications'@'%';
FLUSH PRIVILEGES;
