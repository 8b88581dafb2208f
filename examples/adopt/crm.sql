-- An existing application's table, plaintext PII in ordinary columns (the starting point of
-- README "Bring your existing database"). Recreates database `crm`.
DROP DATABASE IF EXISTS crm;
CREATE DATABASE crm;
CREATE TABLE crm.customers (
  id INT PRIMARY KEY,
  email VARCHAR(100) NOT NULL,
  ssn VARCHAR(16) NOT NULL DEFAULT '',
  notes TEXT,
  KEY (email)
) ENGINE=InnoDB;
INSERT INTO crm.customers
  SELECT seq, CONCAT('customer', seq, '@example.com'),
         CONCAT(LPAD(seq % 1000, 3, '0'), '-45-', LPAD(seq % 10000, 4, '0')),
         IF(seq % 5 = 0, NULL, CONCAT('called on day ', seq % 28))
  FROM crm.seq_1_to_20000;
