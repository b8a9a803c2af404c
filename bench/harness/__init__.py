"""The shared harness of the benchmark: what every section measures with.

common     paths, the run's token, errors, log lines, waits, environments, ports, one GET
procfs     what /proc says about a process or the machine
processes  starting and stopping starters and the bare app, sweeping leftovers
starterlog our starter's log lines (UTC, ms) as events
load       wrk runs, a bounded stream of HUPs, CPU affinity
machine    the machine, the versions, the load average
fmt        the table's number formats
section    what a section is (measure, rows, reading) and the starter setups they share
"""
