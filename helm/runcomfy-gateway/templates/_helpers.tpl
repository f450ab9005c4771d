{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "runcomfy-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "runcomfy-gateway.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "runcomfy-gateway.redisName" -}}
{{- printf "%s-redis" (include "runcomfy-gateway.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "runcomfy-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels: pass a dict with "ctx" (the root context) and "component". */}}
{{- define "runcomfy-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "runcomfy-gateway.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "runcomfy-gateway.labels" -}}
helm.sh/chart: {{ include "runcomfy-gateway.chart" .ctx }}
{{ include "runcomfy-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: runcomfy-gateway
{{- end }}

{{- define "runcomfy-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "runcomfy-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The gateway image: repository@digest when a digest is given, else repository:tag. */}}
{{- define "runcomfy-gateway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The port name Prometheus scrapes: the separate metrics listener, or the API's. */}}
{{- define "runcomfy-gateway.metricsPortName" -}}
{{- if gt (int .Values.metricsPort) 0 }}metrics{{ else }}http{{ end }}
{{- end }}

{{/* A NetworkPolicy peer for the `helm test` pod, when it is rendered. */}}
{{- define "runcomfy-gateway.testPeer" -}}
{{- if .Values.tests.enabled -}}
- podSelector:
    matchLabels:
      {{- include "runcomfy-gateway.selectorLabels" (dict "ctx" . "component" "test") | nindent 6 }}
{{- end }}
{{- end }}

{{/* Secrets -------------------------------------------------------------------------------- */}}

{{/* The Secret holding the tokens: the existing one, or the chart's. */}}
{{- define "runcomfy-gateway.tokenSecretName" -}}
{{- default (include "runcomfy-gateway.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Whether the chart creates its Secret: tokens given as values, or an inline external URL. */}}
{{- define "runcomfy-gateway.createsSecret" -}}
{{- if or (not .Values.secrets.existingSecret) (and (eq .Values.redis.mode "external") (not .Values.redis.external.existingSecret)) -}}
true
{{- end }}
{{- end }}

{{- define "runcomfy-gateway.redisUrlSecretName" -}}
{{- default (include "runcomfy-gateway.fullname" .) .Values.redis.external.existingSecret }}
{{- end }}

{{- define "runcomfy-gateway.redisPasswordSecretName" -}}
{{- default (include "runcomfy-gateway.redisName" .) .Values.redis.statefulset.auth.existingSecret }}
{{- end }}

{{/* Replicas and the checks that refuse unsafe combinations -------------------------------- */}}

{{- define "runcomfy-gateway.multiReplica" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}
true
{{- end }}
{{- end }}

{{- define "runcomfy-gateway.validate" -}}
{{- $mode := .Values.redis.mode }}
{{- if not (has $mode (list "embedded" "external" "statefulset")) }}
{{- fail (printf "redis.mode must be embedded, external or statefulset (got %q)" $mode) }}
{{- end }}
{{- if and (eq $mode "embedded") (include "runcomfy-gateway.multiReplica" .) }}
{{- fail "runcomfy-gateway: replicaCount > 1 and autoscaling need a Redis shared by every pod, but redis.mode is \"embedded\" (a redis-server per pod: replicas would not share teams, keys, jobs or the cache). Set redis.mode=statefulset (the chart's Redis) or redis.mode=external with redis.external.url or redis.external.existingSecret, or run replicaCount=1 without autoscaling." }}
{{- end }}
{{- if and (eq $mode "external") (not .Values.redis.external.existingSecret) (not .Values.redis.external.url) }}
{{- fail "runcomfy-gateway: redis.mode=external needs redis.external.existingSecret (a Secret holding the URL) or redis.external.url." }}
{{- end }}
{{- if not (or .Values.secrets.existingSecret .Values.secrets.upstreamToken) }}
{{- fail "runcomfy-gateway: no RunComfy API token. Set secrets.existingSecret to a Secret holding it (key upstream-token; see docs/deploy.md), or secrets.upstreamToken (e.g. --set secrets.upstreamToken=\"$RUNCOMFY_TOKEN\")." }}
{{- end }}
{{- if and .Values.secrets.existingSecret (or .Values.secrets.upstreamToken .Values.secrets.adminToken) }}
{{- fail "runcomfy-gateway: set either secrets.existingSecret or secrets.upstreamToken/secrets.adminToken, not both." }}
{{- end }}
{{- if and .Values.redis.embedded.existingClaim (ne $mode "embedded") }}
{{- fail "runcomfy-gateway: redis.embedded.existingClaim is only used with redis.mode=embedded." }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (add (int .Values.shutdownGraceSeconds) (int .Values.preStopSleepSeconds)) }}
{{- fail (printf "runcomfy-gateway: terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds + shutdownGraceSeconds (%d + %d), or Kubernetes kills pods mid-drain." (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) (int .Values.shutdownGraceSeconds)) }}
{{- end }}
{{- if eq (int .Values.metricsPort) (int .Values.containerPort) }}
{{- fail "runcomfy-gateway: metricsPort must differ from containerPort (or be 0 to serve /metrics on the http port)." }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- if not .Values.ingress.host }}
{{- fail "runcomfy-gateway: ingress.enabled needs ingress.host (the host name clients use)." }}
{{- end }}
{{- if not (index .Values.config "GATEWAY_PUBLIC_URL") }}
{{- fail "runcomfy-gateway: ingress.enabled needs config.GATEWAY_PUBLIC_URL (e.g. https://<ingress.host>): behind an Ingress the URLs in answers must not come from request headers anyone can set." }}
{{- end }}
{{- end }}
{{- range $key, $value := .Values.config }}
{{- if has $key (list "GATEWAY_UPSTREAM_TOKEN" "GATEWAY_ADMIN_TOKEN" "GATEWAY_REDIS_URL") }}
{{- fail (printf "runcomfy-gateway: config.%s is a secret: set it through secrets.* or redis.* (the chart passes it by secretKeyRef)." $key) }}
{{- end }}
{{- if has $key (list "GATEWAY_HOST" "GATEWAY_PORT" "GATEWAY_DATA_DIR" "GATEWAY_SHUTDOWN_GRACE_SECONDS" "GATEWAY_METRICS_PORT" "GATEWAY_METRICS_HOST") }}
{{- fail (printf "runcomfy-gateway: config.%s is set by the chart (see containerPort, metricsPort and shutdownGraceSeconds)." $key) }}
{{- end }}
{{- if not (hasPrefix "GATEWAY_" $key) }}
{{- fail (printf "runcomfy-gateway: config.%s: only GATEWAY_* settings belong in config." $key) }}
{{- end }}
{{- end }}
{{- end }}
