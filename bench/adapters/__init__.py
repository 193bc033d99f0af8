"""One module per measured library (``lib_<name>``), each exposing an ``Adapter`` (see ``common.Adapter``)."""
