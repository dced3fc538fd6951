"""The physician's full viewer: the OHIF build served by the edge service under a path prefix
(``/viewer`` by default), reading the PACS through the service's own DICOMweb proxy so that the
browser never holds the PACS's credentials."""
