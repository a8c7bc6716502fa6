# Makes fastloop.core a package for cimport, so buf.pxd, scan.pxd and poller.pxd can be
# cimported as namespaces (`from fastloop.core cimport buf`).
