"""Resource accounting: psutil snapshots in a sqlite database, consumption reports.

`collector.collect()` is one `node collect` run; `usage.report_usage()` is what
`node report` calls to send the reports to the master.
"""
