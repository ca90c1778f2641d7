"""pysvscan: daemontools 0.76 rebuilt in Python, integrated with systemd."""
