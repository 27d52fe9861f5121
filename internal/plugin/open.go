package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// openLifetime is the lifetime of open's hand-out, the shortest there is: it is deleted as soon as
// the link is made.
const openLifetime = 5 * time.Minute

func (o *options) openCommand() *cobra.Command {
	var (
		urlOnly bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "open NAME [--url-only]",
		Short: "Open an org in the browser through a one-time frontdoor link",
		Long: `Open a SalesforceOrg in the browser, logged in, through a one-time frontdoor link from
/services/oauth2/singleaccess (as "sf org open" does). The link is made with short-lived access
handed out by the operator, as for "kubectl salesforce exec": the plugin creates a 5-minute
SalesforceAccessToken (you need the RBAC verb use on the org, e.g. through the salesforce-operator-org-user
ClusterRole, and get on secrets in its namespace), waits until the operator issues access, asks
Salesforce for the link with that access token, and deletes the SalesforceAccessToken, which
revokes the token. The org's credential Secret is never read and no refresh token reaches your
machine. The link is a credential: it is printed only with --url-only.`,
		Example: `  kubectl salesforce open acme-uat
  kubectl salesforce open acme-uat --url-only`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.open(cmd.Context(), cmd, args[0], urlOnly, timeout)
		},
	}
	cmd.Flags().BoolVar(&urlOnly, "url-only", false, "Print the one-time login link instead of opening a browser. It is a credential: do not paste it anywhere but a browser.")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "How long to wait for the operator to hand out access.")
	return cmd
}

func (o *options) open(ctx context.Context, cmd *cobra.Command, name string, urlOnly bool, timeout time.Duration) error {
	ns, err := o.namespace()
	if err != nil {
		return err
	}
	kc, err := o.client()
	if err != nil {
		return err
	}
	sf, err := o.salesforceClient()
	if err != nil {
		return err
	}
	h, err := requestAccess(ctx, kc, accessRequest{namespace: ns, org: name, purpose: "open", lifetime: openLifetime, timeout: timeout})
	if h != nil {
		defer h.release(ctx, errOut(cmd))
	}
	if err != nil {
		return err
	}
	link, err := sf.FrontdoorWithAccess(ctx, h.instanceURL(), h.token())
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
