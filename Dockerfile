# Dreamgrid on a CUDA machine: docker build -t dreamgrid . && docker run --gpus all --env-file .env dreamgrid
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 \
    DEVICES=cuda:0 DATA_DIR=/data MODELS_DIR=/app/models
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
RUN python3 -m venv /venv
ENV PATH=/venv/bin:$PATH
# The CUDA build of torch, installed before the rest so nothing pulls another build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128

COPY pyproject.toml constraints.txt README.md ./
COPY bot ./bot
RUN grep -v '^torch==' constraints.txt > /tmp/constraints.txt && pip install -c /tmp/constraints.txt .
COPY models ./models
RUN dreamgrid models create-tiny

VOLUME ["/data"]
CMD ["dreamgrid", "run"]
