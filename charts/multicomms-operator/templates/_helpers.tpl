{{- define "multicomms-operator.labels" -}}
app.kubernetes.io/name: multicomms-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
{{- define "multicomms-operator.selector" -}}
app.kubernetes.io/name: multicomms-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "multicomms-router.labels" -}}
app.kubernetes.io/name: multicomms-router
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
{{- define "multicomms-router.selector" -}}
app.kubernetes.io/name: multicomms-router
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
{{- define "multicomms-processor.labels" -}}
app.kubernetes.io/name: multicomms-processor
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .channel }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}
{{- define "multicomms-processor.selector" -}}
app.kubernetes.io/name: multicomms-processor
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .channel }}
{{- end }}
{{- /* The namespaces whose Companies and Channels this release reconciles: where its Channels
     live (processors.namespaces), by default its own. */}}
{{- define "multicomms-operator.watchNamespaces" -}}
{{- .Values.processors.namespaces | default (list .Release.Namespace) | uniq | join "," -}}
{{- end }}
{{- /* An image's tag: its own, else the release's imageTag, else the chart's appVersion. Call
     with (dict "root" $ "tag" <the image's tag>). */}}
{{- define "multicomms.imageTag" -}}
{{- .tag | default .root.Values.imageTag | default .root.Chart.AppVersion -}}
{{- end }}
