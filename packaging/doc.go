// Package packaging holds the sources of nymvpn's installers, which
// scripts/packages.sh (`make packages`) builds:
//
//   - linux/: the nfpm configuration of the .deb and .rpm, their maintainer
//     scripts and the desktop entry;
//   - windows/: the wixl (msitools) source of the .msi;
//   - macos/: the launchd plist, the app bundle's Info.plist, the pkgbuild and
//     productbuild script with its pre- and post-install scripts.
//
// Its tests check the sources everywhere, and as root build the .deb, .rpm
// and .msi, install the .deb into a throwaway root (an overlay of this
// machine's root in a private mount and network namespace) and read the
// MSI's tables. docs/packaging.md has the rest.
package packaging
