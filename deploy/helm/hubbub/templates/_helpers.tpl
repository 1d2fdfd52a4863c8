{{/* Name of a tier's resources: <release>-<tier> ("hubbub-edge" for release "hubbub"). */}}
{{- define "hubbub.name" -}}
{{- if eq .root.Release.Name .tier -}}{{ .tier }}{{- else -}}{{ printf "%s-%s" .root.Release.Name .tier | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{/* Selector labels of a tier. */}}
{{- define "hubbub.selectorLabels" -}}
app.kubernetes.io/name: {{ .tier }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{/* All labels of a tier's resources. */}}
{{- define "hubbub.labels" -}}
{{ include "hubbub.selectorLabels" . }}
app.kubernetes.io/component: {{ .tier }}
app.kubernetes.io/part-of: hubbub
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Image of a tier. */}}
{{- define "hubbub.image" -}}
{{ printf "%s-%s:%s" .root.Values.image.repository .tier (.root.Values.image.tag | default .root.Chart.AppVersion) }}
{{- end -}}

{{/*
GOMEMLIMIT for a memory limit: goMemLimitPercent of it, in MiB.
Arguments: limit (a Kubernetes quantity in Mi, Gi, M or G) and pct.
*/}}
{{- define "hubbub.gomemlimit" -}}
{{- $q := toString .limit -}}
{{- $mib := 0.0 -}}
{{- if hasSuffix "Gi" $q -}}{{- $mib = mulf (trimSuffix "Gi" $q | float64) 1024 -}}
{{- else if hasSuffix "Mi" $q -}}{{- $mib = trimSuffix "Mi" $q | float64 -}}
{{- else if hasSuffix "G" $q -}}{{- $mib = divf (mulf (trimSuffix "G" $q | float64) 1000000000) 1048576 -}}
{{- else if hasSuffix "M" $q -}}{{- $mib = divf (mulf (trimSuffix "M" $q | float64) 1000000) 1048576 -}}
{{- else -}}{{- fail (printf "memory limit %q: write it in Mi, Gi, M or G (GOMEMLIMIT is computed from it)" $q) -}}
{{- end -}}
{{- if le $mib 0.0 -}}{{- fail (printf "memory limit %q: must be positive" $q) -}}{{- end -}}
{{- printf "%dMiB" (int (floor (divf (mulf $mib (float64 .pct)) 100))) -}}
{{- end -}}

{{/* The environment every tier shares: NATS connection and Go runtime. Arguments: root, tier, resources. */}}
{{- define "hubbub.env" -}}
{{- $v := .root.Values -}}
- name: HUBBUB_NATS_URL
  value: {{ $v.nats.url | quote }}
{{- if eq $v.nats.auth.mode "password" }}
- name: HUBBUB_NATS_USER
  value: {{ index $v.nats.auth.users .tier | quote }}
- name: HUBBUB_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ required "nats.auth.passwordSecret is required with nats.auth.mode=password" $v.nats.auth.passwordSecret }}
      key: {{ .tier }}-password
{{- else if eq $v.nats.auth.mode "creds" }}
- name: HUBBUB_NATS_CREDS
  value: /etc/hubbub/nats-auth/{{ .tier }}.creds
{{- else if eq $v.nats.auth.mode "nkey" }}
- name: HUBBUB_NATS_NKEY
  value: /etc/hubbub/nats-auth/{{ .tier }}.nk
{{- else if ne $v.nats.auth.mode "none" }}
{{- fail (printf "nats.auth.mode %q: want password, creds, nkey or none" $v.nats.auth.mode) }}
{{- end }}
{{- if $v.nats.tls.enabled }}
- name: HUBBUB_NATS_CA
  value: /etc/hubbub/nats-tls/ca.crt
{{- if $v.nats.tls.clientCert }}
- name: HUBBUB_NATS_CERT
  value: /etc/hubbub/nats-tls/tls.crt
- name: HUBBUB_NATS_KEY
  value: /etc/hubbub/nats-tls/tls.key
{{- end }}
{{- end }}
# {{ $v.goMemLimitPercent }}% of the memory limit.
- name: GOMEMLIMIT
  value: {{ include "hubbub.gomemlimit" (dict "limit" (required (printf "%s.resources.limits.memory is required" .tier) .resources.limits.memory) "pct" $v.goMemLimitPercent) | quote }}
# The CPU request, rounded up to whole cores.
- name: GOMAXPROCS
  valueFrom:
    resourceFieldRef:
      resource: requests.cpu
      divisor: "1"
{{- range $k, $val := .env }}
- name: {{ $k }}
  value: {{ $val | toString | quote }}
{{- end }}
{{- end -}}

{{/* Volume mounts for the NATS credentials and TLS files. Arguments: root. */}}
{{- define "hubbub.natsMounts" -}}
{{- $v := .root.Values -}}
- name: tmp
  mountPath: /tmp
{{- if has $v.nats.auth.mode (list "creds" "nkey") }}
- name: nats-auth
  mountPath: /etc/hubbub/nats-auth
  readOnly: true
{{- end }}
{{- if $v.nats.tls.enabled }}
- name: nats-tls
  mountPath: /etc/hubbub/nats-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "hubbub.natsVolumes" -}}
{{- $v := .root.Values -}}
- name: tmp
  emptyDir: {}
{{- if has $v.nats.auth.mode (list "creds" "nkey") }}
- name: nats-auth
  secret:
    secretName: {{ required "nats.auth.filesSecret is required with nats.auth.mode=creds or nkey" $v.nats.auth.filesSecret }}
{{- end }}
{{- if $v.nats.tls.enabled }}
- name: nats-tls
  secret:
    secretName: {{ required "nats.tls.secret is required with nats.tls.enabled" $v.nats.tls.secret }}
{{- end }}
{{- end -}}

{{/* Pod-level settings every tier shares. Arguments: root, tier, values (the tier's). */}}
{{- define "hubbub.podSpec" -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "hubbub.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "hubbub.selectorLabels" . | nindent 8 }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
