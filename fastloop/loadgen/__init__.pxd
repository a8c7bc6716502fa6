# Makes fastloop.loadgen a package for cimport (`from fastloop.loadgen cimport client`).
