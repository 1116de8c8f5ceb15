# Convenience targets; CI runs `bash .ci/run` (= scripts/test.sh).
.PHONY: test lab soak soak-mariadb soak-postgresql soak-zookeeper

PYTHON ?= .venv/bin/python
SOAK_SECONDS ?= 3600
SOAK_SEED ?= 1

# Everything CI runs: installs what the tests need, then ruff, mypy and the whole suite.
test:
	bash scripts/test.sh

# The multi-host lab alone (as root): simulated master hosts in network/PID/UTS/mount namespaces,
# sshd, MariaDB, PostgreSQL and ZooKeeper on 198.18.0.2, one controller per host, every failure
# scenario, and a 3-minute chaos soak (SFC_SOAK_SECONDS, SFC_SOAK_SEED, SFC_SOAK_METASTORE).
lab:
	$(PYTHON) -m pytest -p no:cacheprovider tests/lab -v

# The chaos soak by hand (as root): SOAK_SECONDS (default an hour) on each metastore in turn,
# seed SOAK_SEED; each run prints its figures and fails on two schedulers or a fault not recovered.
soak: soak-mariadb soak-postgresql soak-zookeeper

soak-mariadb soak-postgresql soak-zookeeper:
	$(PYTHON) benchmarks/soak.py --metastore $(@:soak-%=%) --seconds $(SOAK_SECONDS) --seed $(SOAK_SEED)
