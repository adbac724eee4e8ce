"""The JT/T 808 gateway: terminals on TCP in, wire-format v1 fixes on MQTT out (issue #8)."""
