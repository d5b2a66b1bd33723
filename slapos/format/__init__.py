"""The node formatter and node set-up: `slapos node format|register|boot`.

config.py (FormatConfig from slapos.cfg), model.py (the computer description and its files),
host.py (the host as read), plan.py with partition_network.py and addressing.py (pure:
config + host state -> actions.py's actions), apply.py (reads the host; actions -> the
operating system), netif.py (the only module reading network state), register.py, boot.py,
templates.py (the configuration files register and configure local write).
`configure local`, which drives format and grid, lives above them (slapos/cli/configure/).
"""
