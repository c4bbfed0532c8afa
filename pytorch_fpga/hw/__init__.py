"""Hardware side of the library: simulator discovery, RTL drivers and runners."""
