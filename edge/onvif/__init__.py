"""The `onvif` camera driver (edge.onvif.camera) over zeep (edge.onvif.soap), with its event
topic mapping (edge.onvif.events). docs/drivers/onvif.md."""
