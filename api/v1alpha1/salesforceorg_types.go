package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OrgType is the kind of Salesforce org a connection points at.
// +kubebuilder:validation:Enum=Production;Sandbox;DeveloperEdition;Scratch
type OrgType string

const (
	// OrgTypeProduction is a production (or other non-sandbox, non-developer) org.
	OrgTypeProduction OrgType = "Production"
	// OrgTypeSandbox is a sandbox copied from a production org.
	OrgTypeSandbox OrgType = "Sandbox"
	// OrgTypeDeveloperEdition is a free Developer Edition org.
	OrgTypeDeveloperEdition OrgType = "DeveloperEdition"
	// OrgTypeScratch is a short-lived scratch org created from a Dev Hub.
	OrgTypeScratch OrgType = "Scratch"
)

// DefaultAuthSecretKey is the Secret key that holds the SFDX auth URL when authSecretRef.key is unset.
const DefaultAuthSecretKey = "sfdxAuthUrl"

// CreatedByAnnotation records, on create, the Kubernetes user who created a SalesforceOrg. The
// admission webhook sets it and refuses any change to it.
const CreatedByAnnotation = "salesforce.sfops.io/created-by"

// DeletionRequestedAnnotation remembers a deletion that admission refused because active stages
// held the org (its value is when). The operator deletes the org once no active stage holds it;
// removing the annotation cancels that. Crossplane's Usage calls this deletion replay.
const DeletionRequestedAnnotation = "salesforce.sfops.io/deletion-requested"

// CredentialLabel marks a Secret as a Salesforce credential that SalesforceOrgs may use
// ("true"). The operator sets it on the Secrets it writes itself (rotation records).
const CredentialLabel = "salesforce.sfops.io/credential"

// ShardLabel assigns an object to a shard (a manager started with --watch-label-selector), as
// sharding.fluxcd.io/key does for Flux. A sandboxOf org must carry its production org's value:
// the production org's credential chain has one owner, its shard.
const ShardLabel = "sharding.sfops.io/key"

// ReconcileRequestedAtAnnotation asks for a check now, whatever its value ("Test connection").
// The value handled last is echoed to status.lastHandledReconcileAt.
const ReconcileRequestedAtAnnotation = "salesforce.sfops.io/reconcile-requested-at"

// SecretKeyReference points at one key of a Secret in the same namespace.
type SecretKeyReference struct {
	// name of the Secret, in the same namespace as the SalesforceOrg.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`

	// key in the Secret's data whose value is the SFDX auth URL
	// (force://<clientId>:<clientSecret>:<refreshToken>@<host>), as printed by
	// `sf org auth show-sfdx-auth-url --target-org <alias> --json` in result.sfdxAuthUrl.
	// +optional
	// +kubebuilder:default=sfdxAuthUrl
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// PrivateKeyReference points at the Secret (same namespace) holding a JWT private key.
type PrivateKeyReference struct {
	// name of the Secret, in the same namespace as the SalesforceOrg.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`

	// key in the Secret's data whose value is the PEM private key (PKCS#1 or PKCS#8, unencrypted)
	// whose certificate the connected app holds.
	// +optional
	// +kubebuilder:default="tls.key"
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key,omitempty"`
}

// JWTAuth is the OAuth 2.0 JWT bearer flow, as `sf org login jwt` runs it: a connected app's
// consumer key, a pre-authorised username and the private key whose certificate the app holds.
// +kubebuilder:validation:XValidation:rule="has(self.clientId) != has(self.clientIdKey)",message="set exactly one of jwt.clientId (the connected app's consumer key) and jwt.clientIdKey (the key of privateKeySecretRef's Secret that holds it)"
type JWTAuth struct {
	// clientId is the connected app's consumer key.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	ClientID string `json:"clientId,omitempty"`

	// clientIdKey names the key of privateKeySecretRef's Secret that holds the consumer key, for
	// teams that treat it as secret.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ClientIDKey string `json:"clientIdKey,omitempty"`

	// username is the Salesforce username the connected app is pre-authorised for.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Username string `json:"username"`

	// loginUrl is where the assertion is posted: https://login.salesforce.com by default,
	// https://test.salesforce.com for a Sandbox or Scratch org, or the org's My Domain URL.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://')",message="jwt.loginUrl must be an https:// URL, such as https://login.salesforce.com or https://mydomain.my.salesforce.com"
	LoginURL string `json:"loginUrl,omitempty"`

	// privateKeySecretRef names the Secret (same namespace) and key holding the private key.
	// +required
	PrivateKeySecretRef PrivateKeyReference `json:"privateKeySecretRef"`
}

// CredentialSource says how an org authenticates.
// +kubebuilder:validation:Enum=AuthURL;JWT;SandboxOf
type CredentialSource string

const (
	// CredentialSourceAuthURL: an SFDX auth URL in a Secret (authSecretRef).
	CredentialSourceAuthURL CredentialSource = "AuthURL"
	// CredentialSourceJWT: the JWT bearer flow (jwt).
	CredentialSourceJWT CredentialSource = "JWT"
	// CredentialSourceSandboxOf: a sandbox authorised through its production org (sandboxOf).
	CredentialSourceSandboxOf CredentialSource = "SandboxOf"
)

// SalesforceOrgSpec declares one connection to a Salesforce org.
// +kubebuilder:validation:XValidation:rule="(has(self.authSecretRef) ? 1 : 0) + (has(self.jwt) ? 1 : 0) + (has(self.sandboxOf) ? 1 : 0) == 1",message="set exactly one credential source: authSecretRef (an SFDX auth URL in a Secret), jwt (a connected app's certificate and a username) or sandboxOf (a sandbox authorised through its production org)"
// +kubebuilder:validation:XValidation:rule="!has(self.sandboxOf) || self.type == 'Sandbox'",message="sandboxOf is only for orgs of type Sandbox"
// +kubebuilder:validation:XValidation:rule="!has(self.defaultDevHub) || !self.defaultDevHub || (has(self.devHub) && self.devHub)",message="defaultDevHub: true needs devHub: true; set devHub: true or remove defaultDevHub"
// +kubebuilder:validation:XValidation:rule="!has(self.devHub) || !self.devHub || self.type in ['Production', 'DeveloperEdition']",message="devHub: true is only possible on a Production or DeveloperEdition org: Salesforce cannot enable Dev Hub in a sandbox or scratch org"
type SalesforceOrgSpec struct {
	// type of the org. A check that finds the org to be of another type reports TypeMismatch.
	// +required
	Type OrgType `json:"type"`

	// authSecretRef names the Secret (same namespace) and key holding the org's SFDX auth URL.
	// One of authSecretRef, jwt and sandboxOf.
	// +optional
	AuthSecretRef SecretKeyReference `json:"authSecretRef,omitzero"`

	// jwt authenticates with the JWT bearer flow (a connected app's certificate), as CI users of
	// `sf org login jwt` do. One of authSecretRef, jwt and sandboxOf.
	// +optional
	JWT *JWTAuth `json:"jwt,omitempty"`

	// sandboxOf authorises a sandbox through its production org, as the Salesforce CLI does, so
	// that a sandbox refresh needs no one to log in again. One of authSecretRef, jwt and sandboxOf.
	// +optional
	SandboxOf *SandboxOf `json:"sandboxOf,omitempty"`

	// state Active (default) checks the org every checkInterval; Inactive keeps it declared without
	// any call to Salesforce. An org mapped to an Active PipelineStage cannot be made Inactive.
	// +optional
	// +kubebuilder:default=Active
	State State `json:"state,omitempty"`

	// devHub declares that the org is a Dev Hub (it can create scratch orgs). A check that finds
	// otherwise reports NotADevHub.
	// +optional
	DevHub bool `json:"devHub,omitempty"`

	// defaultDevHub marks the namespace's default Dev Hub. At most one org per namespace; needs devHub: true.
	// +optional
	DefaultDevHub bool `json:"defaultDevHub,omitempty"`

	// implementationRef names the SalesforceImplementation (same namespace) this org belongs to.
	// +optional
	ImplementationRef *LocalObjectReference `json:"implementationRef,omitempty"`

	// checkInterval is how often the connection is re-checked, for example 10m or 1h. At least 1m.
	// +optional
	// +kubebuilder:default="10m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$')",message="checkInterval must be a duration such as 10m, 1h or 1h30m: a number and a unit (ms, s, m or h), without spaces"
	// +kubebuilder:validation:XValidation:rule="!self.matches('^([0-9]+([.][0-9]+)?(ms|s|m|h))+$') || duration(self) >= duration('1m')",message="checkInterval must be at least 1m"
	CheckInterval *metav1.Duration `json:"checkInterval,omitempty"`

	// orgId pins the connection to one org (15 or 18 characters, starting with 00D). When set,
	// reaching any other org is an error (OrgIDChanged) rather than a switch. Without it, a new org
	// id (a sandbox refresh) is accepted and announced with an OrgIDChanged event.
	// +optional
	// +kubebuilder:validation:Pattern=`^00D[a-zA-Z0-9]{12}([a-zA-Z0-9]{3})?$`
	OrgID string `json:"orgId,omitempty"`
}

// SandboxOf names a sandbox's production org and the sandbox's name there.
type SandboxOf struct {
	// productionOrgRef names the production SalesforceOrg (same namespace), which must be Active
	// and Connected.
	// +required
	ProductionOrgRef LocalObjectReference `json:"productionOrgRef"`

	// sandboxName is the sandbox's name in the production org (the suffix of its usernames).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=10
	// +kubebuilder:validation:Pattern=`^[a-zA-Z][a-zA-Z0-9]*$`
	SandboxName string `json:"sandboxName"`
}

// APIRequests is the org's daily REST API allowance.
type APIRequests struct {
	// max is the org's daily API request limit.
	// +optional
	Max int64 `json:"max,omitempty"`
	// remaining is what is left of it today.
	// +optional
	Remaining int64 `json:"remaining,omitempty"`
}

// SalesforceOrgStatus is what the controller last learned about the org.
type SalesforceOrgStatus struct {
	// conditions: Ready, Reconciling, Stalled (kstatus) and Connected.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// connection is the last known health of the connection.
	// +optional
	Connection ConnectionState `json:"connection,omitempty"`

	// credentialSource is how the org authenticates: AuthURL, JWT or SandboxOf.
	// +optional
	CredentialSource CredentialSource `json:"credentialSource,omitempty"`

	// sandboxAuthSecret names the Secret the operator owns that holds a sandboxOf org's credential.
	// +optional
	SandboxAuthSecret string `json:"sandboxAuthSecret,omitempty"`

	// orgId is the 18-character id of the org the credential reached.
	// +optional
	OrgID string `json:"orgId,omitempty"`
	// username the credential authenticates as.
	// +optional
	Username string `json:"username,omitempty"`
	// instanceUrl is the org's API base URL.
	// +optional
	InstanceURL string `json:"instanceUrl,omitempty"`
	// instanceName is the Salesforce instance (pod) that hosts the org, for example NA224.
	// +optional
	InstanceName string `json:"instanceName,omitempty"`
	// edition is the org's edition (Organization.OrganizationType), for example "Enterprise Edition".
	// +optional
	Edition string `json:"edition,omitempty"`
	// isSandbox is true for sandboxes (not scratch orgs).
	// +optional
	IsSandbox bool `json:"isSandbox,omitempty"`
	// isScratch is true for scratch orgs.
	// +optional
	IsScratch bool `json:"isScratch,omitempty"`
	// isDevHub is true when the org can create scratch orgs.
	// +optional
	IsDevHub bool `json:"isDevHub,omitempty"`
	// namespacePrefix is the org's managed-package namespace, if any.
	// +optional
	NamespacePrefix string `json:"namespacePrefix,omitempty"`
	// trialExpirationDate is when a scratch or trial org expires.
	// +optional
	TrialExpirationDate *metav1.Time `json:"trialExpirationDate,omitempty"`
	// apiRequests is the org's daily API allowance as of a recent check: it is written when what
	// is left moves by 1% of the limit or more, else with lastCheckTime (the
	// salesforce_org_api_requests_remaining metric has every check's value).
	// +optional
	APIRequests *APIRequests `json:"apiRequests,omitempty"`

	// lastCheckTime is when the connection was last checked, successfully or not. A check that
	// changes nothing else in status does not write it until it is older than the operator's
	// --status-heartbeat (1h by default), so it can lag the latest check by that much; anything
	// else a check finds (conditions, connection, facts) is written at once, and with it the
	// newest lastCheckTime. The salesforce_org_last_successful_check_timestamp_seconds metric
	// has every check.
	// +optional
	LastCheckTime *metav1.Time `json:"lastCheckTime,omitempty"`
	// lastConnectedTime is when a check last succeeded; written with lastCheckTime.
	// +optional
	LastConnectedTime *metav1.Time `json:"lastConnectedTime,omitempty"`
	// consecutiveFailures counts failed checks since the last success.
	// +optional
	ConsecutiveFailures int32 `json:"consecutiveFailures,omitempty"`

	// usedBy lists the PipelineStages (same namespace) that map to this org.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=1000
	UsedBy []string `json:"usedBy,omitempty"`
	// stageCount is the number of entries in usedBy (the STAGES column).
	// +optional
	// +kubebuilder:default=0
	StageCount int32 `json:"stageCount"`

	// observedGeneration is the spec generation the status describes: the last generation a
	// reconcile fully handled.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// checkedSecretVersion is the resourceVersion of the auth Secret at the last check. A Secret
	// with another version is checked at once, also by a newly elected leader.
	// +optional
	CheckedSecretVersion string `json:"checkedSecretVersion,omitempty"`

	// lastHandledReconcileAt echoes the last handled value of the
	// salesforce.sfops.io/reconcile-requested-at annotation.
	// +optional
	LastHandledReconcileAt string `json:"lastHandledReconcileAt,omitempty"`
}

// SalesforceOrg is one declared connection to a Salesforce org. Its credential (an SFDX auth URL)
// lives in a Secret; the controller authenticates, records the org's facts and re-checks its health.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sforg,categories=salesforce
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="State",type=string,JSONPath=`.spec.state`
// +kubebuilder:printcolumn:name="Connection",type=string,JSONPath=`.status.connection`
// +kubebuilder:printcolumn:name="Org ID",type=string,JSONPath=`.status.orgId`
// +kubebuilder:printcolumn:name="Stages",type=integer,JSONPath=`.status.stageCount`,description="Number of pipeline stages mapped to the org"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Credential",type=string,JSONPath=`.status.credentialSource`,priority=1
// +kubebuilder:printcolumn:name="Edition",type=string,JSONPath=`.status.edition`,priority=1
// +kubebuilder:printcolumn:name="Username",type=string,JSONPath=`.status.username`,priority=1
// +kubebuilder:printcolumn:name="Created By",type=string,JSONPath=`.metadata.annotations.salesforce\.sfops\.io/created-by`,priority=1
// +kubebuilder:printcolumn:name="Last Check",type=date,JSONPath=`.status.lastCheckTime`,priority=1
// +kubebuilder:printcolumn:name="Deletion Requested",type=string,JSONPath=`.metadata.annotations.salesforce\.sfops\.io/deletion-requested`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:selectablefield:JSONPath=`.spec.type`
// +kubebuilder:selectablefield:JSONPath=`.spec.state`
// +kubebuilder:selectablefield:JSONPath=`.spec.devHub`
// +kubebuilder:selectablefield:JSONPath=`.spec.implementationRef.name`
// +kubebuilder:selectablefield:JSONPath=`.spec.sandboxOf.productionOrgRef.name`
// +kubebuilder:selectablefield:JSONPath=`.spec.authSecretRef.name`
type SalesforceOrg struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the connection.
	// +required
	Spec SalesforceOrgSpec `json:"spec"`

	// status is what the controller last observed.
	// +optional
	Status SalesforceOrgStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SalesforceOrgList is a list of SalesforceOrg.
type SalesforceOrgList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SalesforceOrg `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SalesforceOrg{}, &SalesforceOrgList{})
}

// IsActive reports whether the org is meant to be checked.
func (o *SalesforceOrg) IsActive() bool { return o.Spec.State != StateInactive }

// Source is how the org authenticates, from its spec.
func (o *SalesforceOrg) Source() CredentialSource {
	switch {
	case o.Spec.JWT != nil:
		return CredentialSourceJWT
	case o.Spec.SandboxOf != nil:
		return CredentialSourceSandboxOf
	}
	return CredentialSourceAuthURL
}

// SandboxAuthSecretName is the Secret the operator owns for a sandboxOf org's credential.
func (o *SalesforceOrg) SandboxAuthSecretName() string { return o.Name + "-sandbox-auth" }

// CredentialSecret is the Secret the org's credential is read from: authSecretRef's, the JWT
// private key's, or the operator's own Secret for a sandboxOf org.
func (o *SalesforceOrg) CredentialSecret() string {
	switch o.Source() {
	case CredentialSourceJWT:
		return o.Spec.JWT.PrivateKeySecretRef.Name
	case CredentialSourceSandboxOf:
		return o.SandboxAuthSecretName()
	}
	return o.Spec.AuthSecretRef.Name
}

// AuthSecretKey is the Secret key holding the auth URL, defaulted.
func (o *SalesforceOrg) AuthSecretKey() string {
	if o.Spec.AuthSecretRef.Key == "" {
		return DefaultAuthSecretKey
	}
	return o.Spec.AuthSecretRef.Key
}
