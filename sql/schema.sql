-- Accounts and plans, as the original VideoWhisper WebRTC server defines them.
-- `properties` (both tables) and `meta` hold JSON text.
--
-- Safe to apply again: existing tables and their rows are kept.
-- `npm run db:setup -- --reset` drops both tables first, as the original's
-- script did with DROP TABLE IF EXISTS.

CREATE TABLE IF NOT EXISTS accounts (
  id INT NOT NULL AUTO_INCREMENT,
  name VARCHAR(255) NOT NULL,
  token VARCHAR(255) NOT NULL,
  properties TEXT NOT NULL,
  planId INT,
  meta TEXT,
  contactId INT,
  created INT,
  PRIMARY KEY (id),
  UNIQUE KEY (token),
  KEY (planId),
  KEY (contactId),
  KEY (created)
);

CREATE TABLE IF NOT EXISTS plans (
  id INT NOT NULL AUTO_INCREMENT,
  name VARCHAR(255) NOT NULL,
  properties TEXT NOT NULL,
  PRIMARY KEY (id)
);
