-- Reverts 0004: drops the ledger of applied event ids.
DROP TABLE IF EXISTS event_ledger;
