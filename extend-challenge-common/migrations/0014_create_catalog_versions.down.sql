DROP TABLE IF EXISTS catalog_active;
DROP TABLE IF EXISTS catalog_versions;
