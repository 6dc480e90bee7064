package viewmodel

import "strings"

// countries maps ISO 3166-1 alpha-2 codes to English short names, for the
// gateway pickers. A code missing here is shown as it is.
var countries = func() map[string]string {
	m := map[string]string{}
	for _, e := range strings.Split(countryTable, "|") {
		code, name, _ := strings.Cut(e, "=")
		m[code] = name
	}
	return m
}()

const countryTable = "AD=Andorra|AE=United Arab Emirates|AF=Afghanistan|AL=Albania|AM=Armenia|AO=Angola|" +
	"AR=Argentina|AT=Austria|AU=Australia|AZ=Azerbaijan|BA=Bosnia and Herzegovina|BD=Bangladesh|BE=Belgium|" +
	"BG=Bulgaria|BH=Bahrain|BO=Bolivia|BR=Brazil|BY=Belarus|CA=Canada|CH=Switzerland|CL=Chile|CN=China|" +
	"CO=Colombia|CR=Costa Rica|CY=Cyprus|CZ=Czechia|DE=Germany|DK=Denmark|DO=Dominican Republic|DZ=Algeria|" +
	"EC=Ecuador|EE=Estonia|EG=Egypt|ES=Spain|FI=Finland|FR=France|GB=United Kingdom|GE=Georgia|GH=Ghana|" +
	"GR=Greece|GT=Guatemala|HK=Hong Kong|HR=Croatia|HU=Hungary|ID=Indonesia|IE=Ireland|IL=Israel|IN=India|" +
	"IQ=Iraq|IR=Iran|IS=Iceland|IT=Italy|JM=Jamaica|JO=Jordan|JP=Japan|KE=Kenya|KG=Kyrgyzstan|KH=Cambodia|" +
	"KR=South Korea|KW=Kuwait|KZ=Kazakhstan|LB=Lebanon|LI=Liechtenstein|LK=Sri Lanka|LT=Lithuania|" +
	"LU=Luxembourg|LV=Latvia|MA=Morocco|MC=Monaco|MD=Moldova|ME=Montenegro|MK=North Macedonia|MN=Mongolia|" +
	"MT=Malta|MX=Mexico|MY=Malaysia|NG=Nigeria|NL=Netherlands|NO=Norway|NP=Nepal|NZ=New Zealand|OM=Oman|" +
	"PA=Panama|PE=Peru|PH=Philippines|PK=Pakistan|PL=Poland|PR=Puerto Rico|PT=Portugal|PY=Paraguay|QA=Qatar|" +
	"RO=Romania|RS=Serbia|RU=Russia|SA=Saudi Arabia|SE=Sweden|SG=Singapore|SI=Slovenia|SK=Slovakia|" +
	"TH=Thailand|TN=Tunisia|TR=Türkiye|TW=Taiwan|TZ=Tanzania|UA=Ukraine|UG=Uganda|US=United States|" +
	"UY=Uruguay|UZ=Uzbekistan|VE=Venezuela|VN=Vietnam|ZA=South Africa"

// CountryName returns the English name of a two-letter country code, or
// the code itself when unknown.
func CountryName(code string) string {
	if n, ok := countries[strings.ToUpper(code)]; ok {
		return n
	}
	return code
}
