# The environment of the reproduce scripts, sourced from the project root:  . scripts/_env.sh DATA_ROOT STORAGE
# (offline models, dev share 0.2 unless set, the given storage unless RETRIEVER_STORAGE is set, logs folder)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 RETRIEVER_DEV_SHARE=${RETRIEVER_DEV_SHARE:-0.2}
export RETRIEVER_STORAGE=${RETRIEVER_STORAGE:-$2} RETRIEVER_DATA_ROOT="$1"
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.dagster_home}
PY=${PY:-.venv/bin/python}
mkdir -p .retriever_logs
