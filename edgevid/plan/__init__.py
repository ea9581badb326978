"""edgevid.plan: which model to deploy on this device, chosen from measurements.

space.py    the candidates: prune level x precision x backend x threads
search.py   PURE: a table of measured candidates in, the pick out; the search's pruning
measure.py  one candidate on this device, in a child process (latency, RSS, accuracy)
build.py    the artefacts the candidates need: pruned checkpoints, exported graphs
report.py   table, Pareto PNG, JSON report, the recommended artefact and its command
run.py      plan(): build -> measure (cached, resumable) -> select -> report
"""
