-- myveil demo schema. Protected columns hold envelopes, so they are VARBINARY (or text
-- wide enough for base64); each searchable one has a BINARY(32) blind-index sibling.
-- Load it directly into MariaDB/MySQL:  mariadb -h127.0.0.1 -uroot < examples/schema.sql
CREATE DATABASE IF NOT EXISTS myveil_demo CHARACTER SET utf8mb4;
USE myveil_demo;

CREATE TABLE IF NOT EXISTS users (
  id          INT PRIMARY KEY AUTO_INCREMENT,
  email       VARBINARY(400) NOT NULL,
  email_bidx  BINARY(32) NOT NULL,
  full_name   VARBINARY(300),
  phone       VARBINARY(200),
  ssn         VARCHAR(200),           -- base64 envelope in a text column
  created_at  TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
  UNIQUE KEY (email_bidx)
);

CREATE TABLE IF NOT EXISTS orders (
  id          INT PRIMARY KEY AUTO_INCREMENT,
  user_id     INT NOT NULL,
  total       DECIMAL(10,2) NOT NULL,
  card_last4  VARBINARY(100),
  KEY (user_id)
);

CREATE TABLE IF NOT EXISTS comments (
  id          INT PRIMARY KEY AUTO_INCREMENT,
  user_id     INT NOT NULL,
  body        VARBINARY(4000),
  KEY (user_id)
);
