SELECT id, email FROM users WHERE id = 1
SELECT * FROM shop.users u JOIN orders o ON o.user_id = u.id WHERE u.email = 'a@b.c'
INSERT INTO users (id, email, ssn) VALUES (1, 'a@b.c', '123-45-6789'), (2, 'x' 'y', 0x41)
INSERT INTO users SET email = _latin1'a', ssn = X'4142' ON DUPLICATE KEY UPDATE ssn = VALUES(ssn)
UPDATE users SET ssn = '1' WHERE email IN ('a', 'b') ORDER BY id LIMIT 1
DELETE FROM users WHERE email = 'q'
SELECT /*!40001 SQL_NO_CACHE */ * FROM users /*M!100000 LIMIT 1 */
WITH c AS (SELECT email FROM users) SELECT * FROM (SELECT * FROM c) d UNION ALL SELECT 'x'
SELECT (SELECT ssn FROM users LIMIT 1), CONCAT(email, 'x') FROM users GROUP BY 1 HAVING COUNT(*) > 1
SET sql_mode = 'ANSI_QUOTES'; UPDATE "users" SET "ssn" = 'x'
SET NAMES latin1; SELECT 1
PREPARE s FROM 'UPDATE users SET ssn = ?'; EXECUTE s USING @a; DEALLOCATE PREPARE s
EXECUTE IMMEDIATE 'SELECT email FROM users'
USE shop; SELECT `email` FROM `users` -- c
CREATE TABLE t LIKE users
ALTER TABLE users ALTER COLUMN ssn SET DEFAULT 'x'
CREATE VIEW v AS SELECT email FROM users
CREATE PROCEDURE p() BEGIN UPDATE users SET ssn = 'x'; END
SELECT email FROM users WHERE id = 1 + 1 + 1 + 1 LOCK IN SHARE MODE
SELECT 'a\'b', "c\"d", N'x', b'0101', 1.5e3, @v, @@session.sql_mode FROM dual
EXPLAIN SELECT * FROM users; ANALYZE TABLE users; SHOW CREATE TABLE users
LOAD DATA LOCAL INFILE 'f' INTO TABLE users
SELECT email INTO OUTFILE '/tmp/x' FROM users
SELECT * FROM other.users WHERE other.users.ssn IS NOT NULL
SELECT u.ssn, (u.ssn), d.ssn FROM other.users u, (SELECT * FROM other.users) d WHERE u.ssn <=> NULL
INSERT INTO other.users VALUES (1, 'a@b.c', '1'), (2, NULL, NULL) ON DUPLICATE KEY UPDATE ssn = VALUES(ssn)
UPDATE other.users o SET o.ssn = ?, email = 'x' WHERE o.id = ? RETURNING ssn
