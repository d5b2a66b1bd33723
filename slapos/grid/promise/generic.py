"""`GenericPromise`, the base class of plugin promises (upstream's API, our code).

A plugin promise (`<partition>/etc/plugin/<name>.py`) defines `RunPromise(GenericPromise)`;
`sense()` does the check and logs through `self.logger` (lines `DATE - LEVEL - TRANSACTION -
message` in its log file); `test()` and `anomaly()` judge the latest transactions of that log
(`_test` / `_anomaly`: `failure_amount` failing transactions among the last `result_count`).

Runs in the promise's own process (`python -m slapos.grid.promise.plugin`), never in the
node's: a plugin is the release's code.
"""

from __future__ import annotations

import logging
import os
import random
import re
import time
from typing import Any

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) - (\w+) - (\d+-\d+) - (.*)$")
FAILURE_LEVELS = ("ERROR", "CRITICAL")


class _Result:
    kind = "Result"

    def __init__(self, problem: bool = False, message: str | None = None, date: Any = None) -> None:
        self.__problem = problem
        self.__message = message or ""
        self.__date = date or time.time()

    def hasFailed(self) -> bool:
        return self.__problem

    @property
    def message(self) -> str:
        return self.__message

    @property
    def date(self) -> Any:
        return self.__date

    @classmethod
    def type(cls) -> str:
        return cls.kind


class TestResult(_Result):
    kind = "Test Result"


class AnomalyResult(_Result):
    kind = "Anomaly Result"


class EmptyResult(_Result):
    kind = "Empty Result"


class GenericPromise:
    """Base class of plugin promises."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.__config = dict(config)
        self.__log_folder = self.__config.pop("log-folder", None)
        self.__partition_folder = self.__config.pop("partition-folder", None)
        self.__debug = self.__config.pop("debug", True)
        self.__name = self.__config.pop("name", None)
        self.__path = self.__config.pop("path", None)
        self.__config.pop("queue", None)
        if self.__name is None or self.__path is None or self.__partition_folder is None:
            raise ValueError("promise configuration needs name, path and partition-folder")
        self.__title = os.path.splitext(self.__name)[0]
        self.setPeriodicity(self.__config.pop("periodicity", 2))
        bang = self.__config.pop("bang-on-failure", None)
        self.__allow_bang = (
            str(bang).strip().lower() in ("true", "yes", "1", "on") if bang is not None else True
        )
        self.__transaction = f"{int(time.time())}-{random.randint(100, 999)}"
        self.__tested = True
        self.__anomaly_detected = True
        self.__log_file: str | None = None
        self._configureLogger()

    def _configureLogger(self) -> None:
        self.logger = logging.getLogger(f"slapos.promise.{self.__title}")
        for old in list(self.logger.handlers):
            old.close()
            self.logger.removeHandler(old)
        self.logger.propagate = False
        handler: logging.Handler
        if self.__log_folder:
            os.makedirs(self.__log_folder, exist_ok=True)
            self.__log_file = os.path.join(self.__log_folder, f"{self.__title}.log")
            handler = logging.FileHandler(self.__log_file)
        else:
            handler = logging.NullHandler()
        handler.setFormatter(
            logging.Formatter(
                f"%(asctime)s - %(levelname)s - {self.__transaction} - %(message)s",
                datefmt="%Y-%m-%d %H:%M:%S",
            )
        )
        self.logger.addHandler(handler)
        self.logger.setLevel(logging.DEBUG if self.__debug else logging.INFO)

    # ---- configuration ---------------------------------------------------------------

    def getConfig(self, key: str, default: Any = None) -> Any:
        return self.__config.get(key, default)  # type: ignore[no-any-return]

    def setConfig(self, key: str, value: Any) -> None:
        self.__config[key] = value

    def getTitle(self) -> str:
        return str(self.__title)

    def getName(self) -> str:
        return str(self.__name)

    def getLogFile(self) -> str | None:
        return self.__log_file

    def getLogFolder(self) -> str | None:
        return str(self.__log_folder) if self.__log_folder else None

    def getPartitionFolder(self) -> str:
        return str(self.__partition_folder)

    def getPromiseFile(self) -> str:
        return str(self.__path)

    def setPeriodicity(self, minute: float) -> None:
        if minute <= 0:
            raise ValueError("Cannot set promise periodicity to a value less than 1")
        self.__periodicity = minute

    def getPeriodicity(self) -> float:
        return self.__periodicity

    def setTestLess(self) -> None:
        self.__tested = False

    def isTested(self) -> bool:
        return self.__tested

    def setAnomalyLess(self) -> None:
        self.__anomaly_detected = False

    def isAnomalyDetected(self) -> bool:
        return self.__anomaly_detected

    def allowBang(self, allow: bool = True) -> None:
        self.__allow_bang = allow

    def bangAllowed(self) -> bool:
        return self.__allow_bang

    # ---- judging the log ---------------------------------------------------------------

    def getLastPromiseResultList(
        self, latest_minute: int = 0, result_count: int = 1, only_failure: bool = False
    ) -> list[list[dict[str, Any]]]:
        """The latest transactions (newest first), each a list of {date, status, message}."""
        if not self.__log_file or not os.path.exists(self.__log_file):
            return []
        since = time.time() - latest_minute * 60 if latest_minute else 0
        transactions: dict[str, list[dict[str, Any]]] = {}
        order: list[str] = []
        with open(self.__log_file, errors="replace") as handle:
            for line in handle:
                m = LOG_LINE.match(line.rstrip("\n"))
                if m is None:
                    continue
                date, level, tid, message = m.groups()
                stamp = time.mktime(time.strptime(date, "%Y-%m-%d %H:%M:%S"))
                if stamp < since:
                    continue
                if only_failure and level not in FAILURE_LEVELS:
                    continue
                if tid not in transactions:
                    transactions[tid] = []
                    order.append(tid)
                transactions[tid].append({"date": stamp, "status": level, "message": message})
        return [transactions[t] for t in reversed(order)][:result_count]

    def _judge(
        self, result_count: int, failure_amount: int, latest_minute: int
    ) -> tuple[bool, str]:
        latest = self.getLastPromiseResultList(latest_minute, result_count)
        if not latest:
            return False, "No result found!"
        failures = [t for t in latest if any(e["status"] in FAILURE_LEVELS for e in t)]
        newest = latest[0]
        message = "\n".join(e["message"] for e in newest)
        return len(failures) >= failure_amount, message

    def _test(
        self, result_count: int = 1, failure_amount: int = 1, latest_minute: int = 0
    ) -> TestResult:
        problem, message = self._judge(result_count, failure_amount, latest_minute)
        return TestResult(problem, message)

    def _anomaly(
        self, result_count: int = 1, failure_amount: int = 1, latest_minute: int = 0
    ) -> AnomalyResult:
        problem, message = self._judge(result_count, failure_amount, latest_minute)
        return AnomalyResult(problem, message)

    def sense(self) -> None:
        raise NotImplementedError("a promise must define sense()")

    def test(self) -> TestResult:
        return self._test(result_count=1, failure_amount=1)

    def anomaly(self) -> AnomalyResult:
        return self._anomaly(result_count=1, failure_amount=1)
