package plugin

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sfv1 "github.com/sfops/salesforce-operator/api/v1alpha1"
	"github.com/sfops/salesforce-operator/internal/salesforce"
)

func (o *options) openCommand() *cobra.Command {
	var urlOnly bool
	cmd := &cobra.Command{
		Use:   "open NAME [--url-only]",
		Short: "Open an org in the browser through a one-time frontdoor link",
		Long: `Open a SalesforceOrg in the browser, logged in, through a one-time frontdoor link from
/services/oauth2/singleaccess (as "sf org open" does), using the org's credential Secret, which
you must be allowed to read. The link is a credential: it is printed only with --url-only.
Should Salesforce rotate the refresh token meanwhile, the new one is written back to the Secret.`,
		Example: `  kubectl salesforce open acme-uat
  kubectl salesforce open acme-uat --url-only`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.open(cmd.Context(), cmd, args[0], urlOnly)
		},
	}
	cmd.Flags().BoolVar(&urlOnly, "url-only", false, "Print the one-time login link instead of opening a browser. It is a credential: do not paste it anywhere but a browser.")
	return cmd
}

func (o *options) open(ctx context.Context, cmd *cobra.Command, name string, urlOnly bool) error {
	kc, org, err := o.existingOrg(ctx, name)
	if err != nil {
		return err
	}
	cred, persist, err := orgCredential(ctx, kc, org)
	if err != nil {
		return err
	}
	sf, err := o.salesforceClient()
	if err != nil {
		return err
	}
	link, err := sf.FrontdoorURL(ctx, cred, persist)
	if err != nil {
		return withPluginHint(err)
	}
	if urlOnly {
		fmt.Fprintln(cmd.OutOrStdout(), link)
		return nil
	}
	if err := o.env.OpenBrowser(link); err != nil {
		return fmt.Errorf("could not open a browser (%v); run again with --url-only to print a link (a credential: paste it only into a browser)", err)
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "Opened salesforceorg/%s in the browser.\n", name)
	return nil
}

// orgCredential reads the org's credential as the operator would, from the Secret the user can
// read, and a Persist that writes a rotated auth URL back to it.
func orgCredential(ctx context.Context, kc client.Client, org *sfv1.SalesforceOrg) (salesforce.Credential, salesforce.Persist, error) {
	read := func(name string) (*corev1.Secret, error) {
		s := &corev1.Secret{}
		if err := kc.Get(ctx, types.NamespacedName{Namespace: org.Namespace, Name: name}, s); err != nil {
			return nil, fmt.Errorf("reading Secret %s/%s: %w", org.Namespace, name, apiError(err))
		}
		return s, nil
	}
	authURLFrom := func(name, key string) (salesforce.Credential, salesforce.Persist, error) {
		s, err := read(name)
		if err != nil {
			return nil, nil, err
		}
		v, ok := s.Data[key]
		if !ok {
			return nil, nil, fmt.Errorf("Secret %s/%s has no key %q", org.Namespace, name, key)
		}
		a, err := salesforce.ParseAuthURL(string(v))
		if err != nil {
			return nil, nil, fmt.Errorf("Secret %s/%s key %q: %w", org.Namespace, name, key, err)
		}
		persist := func(ctx context.Context, rotated salesforce.AuthURL) error {
			_, err := writeAuthSecret(ctx, kc, org.Namespace, name, key, rotated)
			return err
		}
		return a, persist, nil
	}
	switch {
	case org.Spec.AuthSecretRef.Name != "":
		key := org.Spec.AuthSecretRef.Key
		if key == "" {
			key = sfv1.DefaultAuthSecretKey
		}
		return authURLFrom(org.Spec.AuthSecretRef.Name, key)
	case org.Spec.SandboxOf != nil:
		name := org.Status.SandboxAuthSecret
		if name == "" {
			return nil, nil, fmt.Errorf("SalesforceOrg %s/%s is not authorised yet (status.sandboxAuthSecret is empty): see its Ready condition", org.Namespace, org.Name)
		}
		return authURLFrom(name, sfv1.DefaultAuthSecretKey)
	case org.Spec.JWT != nil:
		spec := org.Spec.JWT
		s, err := read(spec.PrivateKeySecretRef.Name)
		if err != nil {
			return nil, nil, err
		}
		key := spec.PrivateKeySecretRef.Key
		if key == "" {
			key = "tls.key"
		}
		clientID := spec.ClientID
		if spec.ClientIDKey != "" {
			clientID = strings.TrimSpace(string(s.Data[spec.ClientIDKey]))
		}
		return salesforce.JWTBearer{
			ConsumerKey:   clientID,
			Username:      spec.Username,
			PrivateKeyPEM: s.Data[key],
			Sandbox:       org.Spec.Type == sfv1.OrgTypeSandbox || org.Spec.Type == sfv1.OrgTypeScratch,
			LoginURL:      spec.LoginURL,
		}, nil, nil
	}
	return nil, nil, fmt.Errorf("SalesforceOrg %s/%s has no credential source", org.Namespace, org.Name)
}
