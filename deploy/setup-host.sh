#!/bin/bash
# Set up a tweetlake host on Amazon Linux 2023 from what `make dist` built (the CloudFormation
# user-data downloads dist/ and this script, then runs it; an operator can run it by hand):
#
#   setup-host.sh streamer | airflow | streamer,airflow
#
# streamer: tweet-streamer under systemd, its X token fetched from SSM into a systemd credential
#           before every start. airflow: Airflow 3 (api-server, scheduler, dag-processor,
#           triggerer) with a local PostgreSQL metadata database, the tweetlake DAGs, the config
#           Variable and aws_default taken from the instance role.
# Settings (the user-data exports them from the stack's parameters):
#   TL_DIST            folder holding tweetlake-$TL_VERSION-py3-none-any.whl and requirements*.txt
#   TL_VERSION         the tweetlake version to install (pinned: the wheel's version)
#   TL_BUCKET TL_PREFIX TL_REGION TL_GLUE_DATABASE TL_ACCOUNTS (comma-separated) TL_POLL_INTERVAL_S
#   TL_TOKEN_PARAMETER the SSM SecureString parameter holding the X bearer token
#   TL_ROOT            prefix for every file written (default: none; tests write under a temp dir)
set -euo pipefail

ROOT="${TL_ROOT:-}"
VENV=/opt/tweetlake/.venv

toml_list() {  # a,b -> ["a", "b"]
  local out="" item
  IFS=',' read -ra items <<< "$1"
  for item in "${items[@]}"; do out+="${out:+, }\"${item}\""; done
  printf '[%s]' "$out"
}

write_config() {
  install -d -m 0755 "$ROOT/etc/tweetlake"
  cat > "$ROOT/etc/tweetlake/tweetlake.toml" <<TOML
# Written by setup-host.sh; every key: /opt/tweetlake/.venv/share/tweetlake/deploy/tweetlake.example.toml
[collect]
mode = "poll"
users = $(toml_list "$TL_ACCOUNTS")
poll_interval_s = $TL_POLL_INTERVAL_S
[landing]
uri = "s3://$TL_BUCKET/$TL_PREFIX/landing"
region = "$TL_REGION"
[state]
dir = "/var/lib/tweetlake"
[tables]
uri = "s3://$TL_BUCKET/$TL_PREFIX/tables"
catalog = "glue"
namespace = "$TL_GLUE_DATABASE"
region = "$TL_REGION"
TOML
}

install_tweetlake() {  # $1: the requirements file for this host
  dnf install -y python3.11
  python3.11 -m venv "$ROOT$VENV"
  "$ROOT$VENV/bin/pip" install --quiet --require-hashes -r "$TL_DIST/$1"
  "$ROOT$VENV/bin/pip" install --quiet --no-deps "$TL_DIST/tweetlake-$TL_VERSION-py3-none-any.whl"
}

units() {  # where the wheel put the systemd units
  echo "$("$ROOT$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["data"])')/share/tweetlake/systemd"
}

write_streamer_units() {
  install -d -m 0700 "$ROOT/etc/tweetlake/credentials"
  install -d -m 0755 "$ROOT/opt/tweetlake" "$ROOT/etc/systemd/system/tweet-streamer.service.d"
  cat > "$ROOT/opt/tweetlake/fetch-x-credentials" <<SH
#!/bin/bash
# The X token from SSM into the file tweet-streamer's LoadCredential= reads (root only).
set -euo pipefail
umask 077
aws ssm get-parameter --with-decryption --region '$TL_REGION' --name '$TL_TOKEN_PARAMETER' \\
  --query Parameter.Value --output text > /etc/tweetlake/credentials/bearer_token.new
mv /etc/tweetlake/credentials/bearer_token.new /etc/tweetlake/credentials/bearer_token
SH
  chmod 0700 "$ROOT/opt/tweetlake/fetch-x-credentials"
  cat > "$ROOT/etc/systemd/system/tweetlake-x-credentials.service" <<'UNIT'
[Unit]
Description=Fetch the X token from SSM for tweet-streamer (runs before every start of it)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/opt/tweetlake/fetch-x-credentials
UNIT
  cat > "$ROOT/etc/systemd/system/tweet-streamer.service.d/ssm.conf" <<'UNIT'
[Unit]
# a restart fetches the token again: rotating it is put-parameter --overwrite + restart
Requires=tweetlake-x-credentials.service
After=tweetlake-x-credentials.service
UNIT
}

setup_streamer() {
  write_streamer_units
  install -m 0644 "$(units)/tweet-streamer.service" "$ROOT/etc/systemd/system/"
  systemctl daemon-reload
  systemctl enable --now tweet-streamer
}

write_airflow_env() {  # $1: the metadata database password
  install -d -m 0755 "$ROOT/etc/tweetlake"
  umask 027
  cat > "$ROOT/etc/tweetlake/airflow.env" <<ENV
AIRFLOW_HOME=/var/lib/airflow
AIRFLOW__CORE__EXECUTOR=LocalExecutor
AIRFLOW__CORE__DAGS_FOLDER=$VENV/share/tweetlake/dags
AIRFLOW__CORE__LOAD_EXAMPLES=False
AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=postgresql+psycopg2://airflow:$1@127.0.0.1/airflow
AIRFLOW__API_AUTH__JWT_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
AIRFLOW__API__HOST=127.0.0.1
AIRFLOW__LOGGING__BASE_LOG_FOLDER=/var/log/airflow
AIRFLOW_VAR_TWEETLAKE_CONFIG=/etc/tweetlake/tweetlake.toml
AIRFLOW_CONN_AWS_DEFAULT='{"conn_type": "aws", "extra": {"region_name": "$TL_REGION"}}'
ENV
  umask 022
}

setup_airflow() {
  dnf install -y postgresql15-server
  postgresql-setup --initdb
  # the metadata database: password logins over loopback only
  sed -i 's/^\(host.*127.0.0.1\/32 *\)ident$/\1scram-sha-256/' "$ROOT/var/lib/pgsql/data/pg_hba.conf"
  systemctl enable --now postgresql
  local password
  password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=\n')
  runuser -u postgres -- psql -v ON_ERROR_STOP=1 \
    -c "CREATE USER airflow PASSWORD '$password'" -c "CREATE DATABASE airflow OWNER airflow"
  useradd --system --home-dir /var/lib/airflow --shell /sbin/nologin airflow
  install -d -m 0750 "$ROOT/var/lib/airflow" "$ROOT/var/log/airflow"
  chown airflow:airflow "$ROOT/var/lib/airflow" "$ROOT/var/log/airflow"
  write_airflow_env "$password"
  chgrp airflow "$ROOT/etc/tweetlake/airflow.env"
  runuser -u airflow -- bash -c "set -a; . /etc/tweetlake/airflow.env; exec $VENV/bin/airflow db migrate"
  install -d -m 0755 "$ROOT/etc/systemd/system"
  install -m 0644 "$(units)"/airflow-*.service "$(units)/airflow.target" "$ROOT/etc/systemd/system/"
  systemctl daemon-reload
  systemctl enable --now airflow.target
}

main() {
  local roles="$1"
  case "$roles" in
    streamer) requirements=requirements.txt ;;
    airflow | streamer,airflow) requirements=requirements-airflow.txt ;;
    *) echo "setup-host.sh: roles must be streamer, airflow or streamer,airflow (got '$roles')" >&2; exit 2 ;;
  esac
  install_tweetlake "$requirements"
  write_config  # the streamer unit's ExecStartPre checks it (with the token) before every start
  [[ "$roles" == airflow ]] || setup_streamer
  [[ "$roles" == streamer ]] || setup_airflow
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
