package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RequesterAnnotation records, on create, the Kubernetes user or ServiceAccount that asked for a
// SalesforceAccessToken, as JSON {"username","uid","groups"}. The admission webhook writes it
// from the request itself and refuses any change, so it cannot be forged; the controller checks
// the recorded requester's `use` permission on the org again before every hand-out.
const RequesterAnnotation = "salesforce.sfops.io/requester"

// UseVerb is the RBAC verb on a salesforceorgs resource name that lets its holder ask for short-lived
// access to that org (create a SalesforceAccessToken naming it).
const UseVerb = "use"

// Keys of a hand-out Secret. The first three are the Salesforce CLI's own environment variables:
// mounted with envFrom, `sf` commands run against the org with no login step
// (SF_TARGET_ORG holding an access token makes the CLI use it as it is, at SF_ORG_INSTANCE_URL;
// `sf org login access-token --instance-url "$SF_ORG_INSTANCE_URL" --no-prompt` reads
// SF_ACCESS_TOKEN when a named login is wanted).
const (
	AccessTokenKey       = "SF_ACCESS_TOKEN"
	AccessTargetOrgKey   = "SF_TARGET_ORG"
	AccessInstanceURLKey = "SF_ORG_INSTANCE_URL"
	AccessOrgIDKey       = "SALESFORCE_ORG_ID"
	AccessUsernameKey    = "SALESFORCE_USERNAME"
	AccessExpiresAtKey   = "SALESFORCE_ACCESS_EXPIRES_AT"
)

// AccessTokenLabel marks a hand-out Secret with the SalesforceOrg it opens (the operator finds
// every live hand-out of an org by it).
const AccessTokenLabel = "salesforce.sfops.io/access-for"

// DefaultAccessLifetime is a hand-out's lifetime when spec.lifetime is not set.
const DefaultAccessLifetime = time.Hour

// SalesforceAccessTokenSpec asks for short-lived access to one org.
// +kubebuilder:validation:XValidation:rule="self.orgRef == oldSelf.orgRef",message="orgRef cannot be changed: create another SalesforceAccessToken for another org"
// +kubebuilder:validation:XValidation:rule="has(self.stageRef) == has(oldSelf.stageRef) && (!has(self.stageRef) || self.stageRef == oldSelf.stageRef)",message="stageRef cannot be changed: create another SalesforceAccessToken"
type SalesforceAccessTokenSpec struct {
	// orgRef names the SalesforceOrg (same namespace) to get access to. The requester needs the
	// `use` verb on it (RBAC resource salesforceorgs, that resource name).
	// +required
	OrgRef LocalObjectReference `json:"orgRef"`

	// stageRef optionally names the PipelineStage (same namespace) the access is for: it must be
	// Active and map to orgRef, and access is withdrawn when it stops doing so.
	// +optional
	StageRef *LocalObjectReference `json:"stageRef,omitempty"`

	// secretName is the Secret the operator writes (same namespace); default: this object's name.
	// The Secret must not exist already unless this object owns it.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	SecretName string `json:"secretName,omitempty"`

	// lifetime of the access from the object's creation, from 5m to 12h (default 1h). When it
	// ends, the Secret is deleted and the token revoked; the object stays, Ready False (Expired).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('5m') && duration(self) <= duration('12h')",message="lifetime must be between 5m and 12h"
	Lifetime *metav1.Duration `json:"lifetime,omitempty"`
}

// SalesforceAccessTokenStatus is what the controller last did for the request. Never a credential.
type SalesforceAccessTokenStatus struct {
	// conditions: Ready (the Secret holds live access), Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// requester is who asked (from the admission record).
	// +optional
	Requester string `json:"requester,omitempty"`

	// secretName is the Secret holding the access while Ready.
	// +optional
	SecretName string `json:"secretName,omitempty"`

	// expiresAt is when the access ends (creation + lifetime).
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// issuedAt is when the Secret's token was last written.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`

	// instanceUrl and username of the org the access opens.
	// +optional
	InstanceURL string `json:"instanceUrl,omitempty"`
	// +optional
	Username string `json:"username,omitempty"`

	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// SalesforceAccessToken asks the operator for short-lived access to one SalesforceOrg: it writes
// a Secret holding an access token (never the refresh token) and keeps it fresh until the
// lifetime ends or the object is deleted, then deletes the Secret and revokes the token.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sfaccess,categories=salesforce
// +kubebuilder:printcolumn:name="Org",type=string,JSONPath=`.spec.orgRef.name`
// +kubebuilder:printcolumn:name="Stage",type=string,JSONPath=`.spec.stageRef.name`
// +kubebuilder:printcolumn:name="Expires",type=string,JSONPath=`.status.expiresAt`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Requester",type=string,JSONPath=`.status.requester`,priority=1
// +kubebuilder:printcolumn:name="Secret",type=string,JSONPath=`.status.secretName`,priority=1
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:selectablefield:JSONPath=`.spec.orgRef.name`
type SalesforceAccessToken struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec asks for the access.
	// +required
	Spec SalesforceAccessTokenSpec `json:"spec"`

	// status is what the controller last did.
	// +optional
	Status SalesforceAccessTokenStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SalesforceAccessTokenList is a list of SalesforceAccessToken.
type SalesforceAccessTokenList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SalesforceAccessToken `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SalesforceAccessToken{}, &SalesforceAccessTokenList{})
}

// TargetSecret is the Secret the hand-out is written to.
func (a *SalesforceAccessToken) TargetSecret() string {
	if a.Spec.SecretName != "" {
		return a.Spec.SecretName
	}
	return a.Name
}

// Lifetime is spec.lifetime or its default.
func (a *SalesforceAccessToken) Lifetime() time.Duration {
	if a.Spec.Lifetime != nil && a.Spec.Lifetime.Duration > 0 {
		return a.Spec.Lifetime.Duration
	}
	return DefaultAccessLifetime
}

// ExpiresAt is when the access ends: creation plus lifetime.
func (a *SalesforceAccessToken) ExpiresAt() time.Time {
	return a.CreationTimestamp.Add(a.Lifetime())
}
