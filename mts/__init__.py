"""mts: collect CoinGecko market data into a local, query-ready data folder."""

__version__ = "0.1.0"
