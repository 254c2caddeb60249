-- The database every SmartSession node writes to. Run once on the PostgreSQL host:
--   sudo -u postgres psql -v password="'change-me'" -f deploy/postgresql/setup.sql
-- The nodes create and migrate the tables themselves on first start.
CREATE ROLE smartsession LOGIN PASSWORD :password;
CREATE DATABASE smartsession OWNER smartsession ENCODING 'UTF8';
