"""What pyproject.toml cannot say: the migrations (sql/) and the demo content (demo/) stay at the top of the
repository and ship inside the engine package, as engine/sql and engine/demo, where engine/resources.py finds
them once installed. Packages are found by name, so a new sub-package needs nothing here; a new folder of
data shipped this way gets an entry in DATA."""

from setuptools import find_namespace_packages, setup

DATA = {"engine.sql": "sql", "engine.demo": "demo"}  # package inside the wheel -> folder in the repository
CODE = find_namespace_packages(
    include=[
        "engine",
        "engine.*",
        "handlers",
        "handlers.*",
        "state_machines",
        "state_machines.*",
        "simulators",
        "simulators.*",
    ],
    exclude=["*.__pycache__"],
)

setup(
    packages=[*CODE, *DATA],
    package_dir=DATA,
    package_data={"engine.sql": ["*.sql"], "engine.demo": ["*.yaml", "pictures/*"]},
)
