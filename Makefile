# Convenience targets; CI runs `bash .ci/run` (= scripts/test.sh).
.PHONY: test lab

# Everything CI runs: installs what the tests need, then ruff, mypy and the whole suite.
test:
	bash scripts/test.sh

# The multi-host lab alone (as root): simulated master hosts in network/PID/UTS namespaces,
# sshd, MariaDB on 198.18.0.2, one controller per host, every failure scenario.
lab:
	.venv/bin/python -m pytest tests/lab -v
