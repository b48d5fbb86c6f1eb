"""One scheduled check as plain functions (:mod:`flows.monitor.run`): resume, discover, check,
alert, deliver; the monitor's state and run lock between runs, the drift history, which files a
run checks and which made it fail, and the feed's freshness."""
