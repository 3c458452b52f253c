-- Broker identifiers of our equities loaded from the brokers' own instrument dumps
-- (`sharewise instruments load FILE`, engine/instrument_ids.py). The engine ships a file of them
-- (engine/data/broker_instruments.csv); a row here is laid over it field by field: a NULL field
-- keeps the shipped value. source: the file the row was last loaded from.
CREATE TABLE engine.broker_instrument (
    symbol          TEXT        PRIMARY KEY,
    isin            TEXT,
    smartapi_token  TEXT,
    source          TEXT        NOT NULL,
    loaded_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
