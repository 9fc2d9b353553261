"""Active asset scanning with nmap (python-nmap), scoped and validated."""
