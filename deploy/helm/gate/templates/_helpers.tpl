{{/* Names and labels shared by every template. */}}
{{- define "gate.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gate.labels" -}}
{{ include "gate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* repository@sha256:… — a digest is required and a tag is never used. */}}
{{- define "gate.image" -}}
{{- $repo := required "image.repository is required" .Values.image.repository -}}
{{- $digest := required "image.digest (sha256:<64 hex>) is required: gate runs by digest only" .Values.image.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $digest) -}}
{{- fail (printf "image.digest must be sha256:<64 hex>, got %q" $digest) -}}
{{- end -}}
{{- printf "%s@%s" $repo $digest -}}
{{- end -}}

{{- define "gate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gate.webhookSecret" -}}
{{- if .Values.webhook.tls.secretName -}}
{{- .Values.webhook.tls.secretName -}}
{{- else if .Values.webhook.certManager.enabled -}}
{{- printf "%s-webhook-tls" (include "gate.fullname" .) -}}
{{- else -}}
{{- fail "webhook.enabled needs webhook.tls.secretName (with webhook.caBundle) or webhook.certManager.enabled" -}}
{{- end -}}
{{- end -}}

{{/*
Trivy client/server mode (values trivyServer.*). "gate.trivyServer.deploy" is "true" when the chart runs
the server itself (enabled, no external.url); every other template asks it instead of repeating the rule.
*/}}
{{- define "gate.trivyServer.deploy" -}}
{{- if and .Values.trivyServer.enabled (not .Values.trivyServer.external.url) -}}true{{- end -}}
{{- end -}}

{{- define "gate.trivyServer.fullname" -}}
{{- printf "%s-trivy-server" (include "gate.fullname" . | trunc 50 | trimSuffix "-") -}}
{{- end -}}

{{/*
The server's pods must NOT carry gate's selector labels (name=gate): gate's Deployment and Service select
on them, and would adopt or route to the Trivy pods.
*/}}
{{- define "gate.trivyServer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gate.name" . }}-trivy-server
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gate.trivyServer.labels" -}}
{{ include "gate.trivyServer.selectorLabels" . }}
app.kubernetes.io/component: trivy-server
app.kubernetes.io/part-of: {{ include "gate.name" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/*
The server's image: empty repository = gate's own image, whose bundled Trivy is the very binary the gate
pods run as the client (client and server should be the same Trivy version). Otherwise repository@digest,
checked like gate's.
*/}}
{{- define "gate.trivyServer.image" -}}
{{- $image := .Values.trivyServer.image -}}
{{- if not $image.repository -}}
{{- include "gate.image" . -}}
{{- else -}}
{{- $digest := required "trivyServer.image.digest (sha256:<64 hex>) is required with trivyServer.image.repository: the server runs by digest only" $image.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" $digest) -}}
{{- fail (printf "trivyServer.image.digest must be sha256:<64 hex>, got %q" $digest) -}}
{{- end -}}
{{- printf "%s@%s" $image.repository $digest -}}
{{- end -}}
{{- end -}}

{{/* The trivy binary inside that image: gate's venv, or the official image's /usr/local/bin/trivy. */}}
{{- define "gate.trivyServer.binary" -}}
{{- if .Values.trivyServer.image.binary -}}
{{- .Values.trivyServer.image.binary -}}
{{- else if .Values.trivyServer.image.repository -}}
trivy
{{- else -}}
/opt/gate/bin/trivy
{{- end -}}
{{- end -}}

{{/* What gate's GATE_TRIVY_SERVER is: the external URL, or the chart's Service inside the cluster. */}}
{{- define "gate.trivyServer.url" -}}
{{- if .Values.trivyServer.external.url -}}
{{- .Values.trivyServer.external.url | trimSuffix "/" -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%d" (include "gate.trivyServer.fullname" .) .Release.Namespace (int .Values.trivyServer.listenPort) -}}
{{- end -}}
{{- end -}}

{{/*
Refuse, at render time, the trivyServer settings gate itself would refuse at start (gate/config.py) or
that could never work; called from the templates that use them.
*/}}
{{- define "gate.trivyServer.check" -}}
{{- $ts := .Values.trivyServer -}}
{{- if and (not $ts.enabled) $ts.external.url -}}
{{- fail "trivyServer.external.url is set but trivyServer.enabled is false: set trivyServer.enabled=true to scan through it" -}}
{{- end -}}
{{- if $ts.enabled -}}
{{- range $name := list "GATE_TRIVY_SERVER" "GATE_TRIVY_SERVER_TOKEN" "GATE_TRIVY_SERVER_TOKEN_HEADER" "GATE_TRIVY_DB_REPOSITORY" -}}
{{- if hasKey $.Values.env $name -}}
{{- fail (printf "env.%s conflicts with trivyServer.enabled: the chart sets the server settings itself, and the vulnerability DB lives on the server (trivyServer.dbRepository)" $name) -}}
{{- end -}}
{{- end -}}
{{- if $ts.external.url -}}
{{- if not (regexMatch "^https?://[^/@?#[:space:]]+(/[^?#[:space:]]*)?$" $ts.external.url) -}}
{{- fail (printf "trivyServer.external.url must be http://host:port or https://host:port (no user:password@, query or fragment), got %q" $ts.external.url) -}}
{{- end -}}
{{- else -}}
{{- if not $ts.token.existingSecret -}}
{{- fail "trivyServer.token.existingSecret (a Secret holding the server's token) is required when the chart runs the trivy server: without one anything in the cluster could use it" -}}
{{- end -}}
{{- $port := int $ts.listenPort -}}
{{- if or (lt $port 1) (gt $port 65535) -}}
{{- fail (printf "trivyServer.listenPort must be 1..65535, got %v" $ts.listenPort) -}}
{{- end -}}
{{- if and $ts.cache.persistence.enabled (gt (int $ts.replicas) 1) -}}
{{- fail "trivyServer.replicas > 1 cannot share one cache volume: each trivy server locks its cache (\"cache may be in use by another process\"); use the emptyDir cache (each replica fetches its own DB) or one replica" -}}
{{- end -}}
{{- if and $ts.skipDBUpdate (not $ts.cache.persistence.enabled) -}}
{{- fail "trivyServer.skipDBUpdate needs trivyServer.cache.persistence with a pre-filled DB (db/trivy.db, db/metadata.json): an emptyDir starts empty and the server would not start" -}}
{{- end -}}
{{- end -}}
{{- if and $ts.tokenHeader (not $ts.token.existingSecret) -}}
{{- fail "trivyServer.tokenHeader is set but trivyServer.token.existingSecret is not: a header needs a token" -}}
{{- end -}}
{{- if and $ts.tokenHeader (not (regexMatch "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" $ts.tokenHeader)) -}}
{{- fail (printf "trivyServer.tokenHeader must be an HTTP header name, got %q" $ts.tokenHeader) -}}
{{- end -}}
{{- end -}}
{{- end -}}
