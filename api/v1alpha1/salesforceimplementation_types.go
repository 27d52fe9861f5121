package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeletionPolicy says what happens to an implementation's member orgs when it is deleted.
// +kubebuilder:validation:Enum=Orphan;Delete
type DeletionPolicy string

const (
	// DeletionPolicyOrphan leaves the member orgs in place (the default).
	DeletionPolicyOrphan DeletionPolicy = "Orphan"
	// DeletionPolicyDelete deletes the member orgs too, except those an active stage uses.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// SalesforceImplementationSpec groups one production org with its sandboxes.
type SalesforceImplementationSpec struct {
	// displayName is the human name of the implementation, for example "Acme Sales Cloud".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	DisplayName string `json:"displayName"`

	// description says what the implementation is for.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// productionOrgRef names the implementation's production SalesforceOrg (same namespace),
	// which must be of type Production.
	// +optional
	ProductionOrgRef *LocalObjectReference `json:"productionOrgRef,omitempty"`

	// suspend stops every health check of the member orgs (no Salesforce calls) until set back to
	// false. Nothing is ever deleted by suspension.
	// +optional
	// +kubebuilder:default=false
	Suspend bool `json:"suspend"`

	// deletionPolicy: Orphan (default) leaves the member orgs when the implementation is deleted;
	// Delete deletes them too, waiting for any org that an active pipeline stage still uses.
	// +optional
	// +kubebuilder:default=Orphan
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`
}

// MemberStatus is one member org as the implementation sees it.
type MemberStatus struct {
	// name of the SalesforceOrg.
	// +required
	Name string `json:"name"`
	// orgId of the org, once known.
	// +optional
	OrgID string `json:"orgId,omitempty"`
	// connection of the org.
	// +optional
	Connection ConnectionState `json:"connection,omitempty"`
}

// SalesforceImplementationStatus summarises the member orgs.
type SalesforceImplementationStatus struct {
	// conditions: Ready, Reconciling, Stalled.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// production is the production org.
	// +optional
	Production *MemberStatus `json:"production,omitempty"`

	// sandboxes are the other member orgs (sandboxes, developer-edition and scratch orgs).
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1000
	Sandboxes []MemberStatus `json:"sandboxes,omitempty"`

	// orgCount is the number of member orgs.
	// +optional
	// +kubebuilder:default=0
	OrgCount int32 `json:"orgCount"`

	// connectedCount is the number of member orgs that are Connected.
	// +optional
	// +kubebuilder:default=0
	ConnectedCount int32 `json:"connectedCount"`

	// suspendedAt is when the implementation was suspended; unset while it is not.
	// +optional
	SuspendedAt *metav1.Time `json:"suspendedAt,omitempty"`

	// observedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
}

// SalesforceImplementation groups a production org with its sandboxes, summarises their health,
// and can be suspended and reactivated as one unit.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sfimpl,categories=salesforce
// +kubebuilder:printcolumn:name="Display Name",type=string,JSONPath=`.spec.displayName`
// +kubebuilder:printcolumn:name="Production",type=string,JSONPath=`.spec.productionOrgRef.name`
// +kubebuilder:printcolumn:name="Orgs",type=integer,JSONPath=`.status.orgCount`
// +kubebuilder:printcolumn:name="Connected",type=integer,JSONPath=`.status.connectedCount`
// +kubebuilder:printcolumn:name="Suspended",type=boolean,JSONPath=`.spec.suspend`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Message",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].message`,priority=1
// +kubebuilder:selectablefield:JSONPath=`.spec.productionOrgRef.name`
type SalesforceImplementation struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the implementation.
	// +required
	Spec SalesforceImplementationSpec `json:"spec"`

	// status is what the controller last observed.
	// +optional
	Status SalesforceImplementationStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SalesforceImplementationList is a list of SalesforceImplementation.
type SalesforceImplementationList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SalesforceImplementation `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SalesforceImplementation{}, &SalesforceImplementationList{})
}
