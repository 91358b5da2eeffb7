"""The admin plane: counters read when scraped, the stats page, Prometheus metrics, the runtime
socket and the access logs. Nothing here runs on the data path except `counters` (plain
attribute updates) and, when logging is on, `access` (one line per request or connection)."""
