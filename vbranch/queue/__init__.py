"""The queue: customer sessions and the live queue desk.

`vbranch.queue.sessions` creates sessions and moves them through their state
machine (each change and its timeline event committed together);
`vbranch.queue.desk` drives the pure routing engine, persists its decisions and
announces them to the parties from an outbox. Built and wired in
`vbranch.bootstrap`; nothing is re-exported here, so importing the package is cheap.
"""
