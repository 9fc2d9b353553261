#!/usr/bin/env bash
# One-shot setup for docker-compose.yml: a CA, node/Kibana certificates, the kibana_system password.
set -euo pipefail
cd /usr/share/elasticsearch
if [ ! -f config/certs/ca.zip ]; then
  bin/elasticsearch-certutil ca --silent --pem -out config/certs/ca.zip
  unzip -o config/certs/ca.zip -d config/certs
fi
if [ ! -f config/certs/certs.zip ]; then
  # ES_NODES: the Elasticsearch nodes to certify (docker-compose.cluster.yml sets "es01 es02 es03")
  {
    echo "instances:"
    for node in ${ES_NODES:-es01}; do
      printf '  - name: %s\n    dns: [%s, localhost]\n    ip: [127.0.0.1]\n' "$node" "$node"
    done
    cat <<YML
  - name: kibana
    dns: [kibana, localhost]
    ip: [127.0.0.1]
  - name: console
    dns: [console, localhost]
    ip: [127.0.0.1]
YML
  } > config/certs/instances.yml
  bin/elasticsearch-certutil cert --silent --pem -out config/certs/certs.zip --in config/certs/instances.yml \
    --ca-cert config/certs/ca/ca.crt --ca-key config/certs/ca/ca.key
  unzip -o config/certs/certs.zip -d config/certs
fi
if [ ! -f config/certs/console/console.crt ]; then  # deployments set up before the console existed
  printf 'instances:\n  - name: console\n    dns: [console, localhost]\n    ip: [127.0.0.1]\n' > config/certs/console.yml
  bin/elasticsearch-certutil cert --silent --pem -out config/certs/console.zip --in config/certs/console.yml \
    --ca-cert config/certs/ca/ca.crt --ca-key config/certs/ca/ca.key
  unzip -o config/certs/console.zip -d config/certs
fi
chown -R root:root config/certs
find config/certs -type d -exec chmod 750 {} \;
find config/certs -type f -exec chmod 640 {} \;
# The CA certificate is public: the secops services (unprivileged user "secops") verify the node with it.
chmod 755 config/certs config/certs/ca
chmod 644 config/certs/ca/ca.crt
echo "waiting for Elasticsearch"
until curl -s --cacert config/certs/ca/ca.crt https://es01:9200 | grep -q "missing authentication credentials"; do sleep 5; done
until curl -s -X POST --cacert config/certs/ca/ca.crt -u "elastic:${ELASTIC_PASSWORD}" -H "Content-Type: application/json" \
    https://es01:9200/_security/user/kibana_system/_password -d "{\"password\":\"${KIBANA_PASSWORD}\"}" | grep -q "^{}"; do
  sleep 5
done
echo "setup done"
