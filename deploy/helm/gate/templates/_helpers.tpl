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
