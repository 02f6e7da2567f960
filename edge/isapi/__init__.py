"""Hikvision ISAPI devices (docs/drivers/isapi.md): HTTP(S) with digest authentication, XML or
JSON bodies, and a long-lived multipart event stream.

`session` is the account on one device (requests, the alert stream, health); `stream` reads the
multipart stream and decodes its event bodies; `camera` drives cameras and people counters.
"""
