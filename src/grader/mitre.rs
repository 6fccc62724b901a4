//! MITRE ATT&CK (Enterprise) techniques and the tactics they belong to, for the `falco`
//! grader's tag check (seed 004: a model tagged a shutdown rule with T1538, Cloud Service
//! Dashboard, a Discovery technique, where T1529 System Shutdown/Reboot, an Impact technique,
//! belongs). Source: attack.mitre.org, Enterprise matrix (technique pages list their tactics).
//! Sub-techniques (T1059.004) take their parent's tactics, which holds for the techniques a
//! Falco rule can detect.

/// (technique id, name, tactics as Falco's `mitre_*` tag suffixes).
const TECHNIQUES: &[(&str, &str, &[&str])] = &[
    ("T1001", "Data Obfuscation", &["command_and_control"]),
    ("T1003", "OS Credential Dumping", &["credential_access"]),
    ("T1005", "Data from Local System", &["collection"]),
    ("T1007", "System Service Discovery", &["discovery"]),
    ("T1008", "Fallback Channels", &["command_and_control"]),
    ("T1011", "Exfiltration Over Other Network Medium", &["exfiltration"]),
    ("T1014", "Rootkit", &["defense_evasion"]),
    ("T1016", "System Network Configuration Discovery", &["discovery"]),
    ("T1018", "Remote System Discovery", &["discovery"]),
    ("T1020", "Automated Exfiltration", &["exfiltration"]),
    ("T1021", "Remote Services", &["lateral_movement"]),
    ("T1025", "Data from Removable Media", &["collection"]),
    ("T1027", "Obfuscated Files or Information", &["defense_evasion"]),
    ("T1029", "Scheduled Transfer", &["exfiltration"]),
    ("T1030", "Data Transfer Size Limits", &["exfiltration"]),
    ("T1033", "System Owner/User Discovery", &["discovery"]),
    ("T1036", "Masquerading", &["defense_evasion"]),
    (
        "T1037",
        "Boot or Logon Initialization Scripts",
        &["persistence", "privilege_escalation"],
    ),
    ("T1039", "Data from Network Shared Drive", &["collection"]),
    ("T1040", "Network Sniffing", &["credential_access", "discovery"]),
    ("T1041", "Exfiltration Over C2 Channel", &["exfiltration"]),
    ("T1046", "Network Service Discovery", &["discovery"]),
    ("T1048", "Exfiltration Over Alternative Protocol", &["exfiltration"]),
    ("T1049", "System Network Connections Discovery", &["discovery"]),
    (
        "T1053",
        "Scheduled Task/Job",
        &["execution", "persistence", "privilege_escalation"],
    ),
    (
        "T1055",
        "Process Injection",
        &["defense_evasion", "privilege_escalation"],
    ),
    ("T1056", "Input Capture", &["collection", "credential_access"]),
    ("T1057", "Process Discovery", &["discovery"]),
    ("T1059", "Command and Scripting Interpreter", &["execution"]),
    (
        "T1068",
        "Exploitation for Privilege Escalation",
        &["privilege_escalation"],
    ),
    ("T1069", "Permission Groups Discovery", &["discovery"]),
    ("T1070", "Indicator Removal", &["defense_evasion"]),
    ("T1071", "Application Layer Protocol", &["command_and_control"]),
    ("T1072", "Software Deployment Tools", &["execution", "lateral_movement"]),
    ("T1074", "Data Staged", &["collection"]),
    (
        "T1078",
        "Valid Accounts",
        &[
            "defense_evasion",
            "persistence",
            "privilege_escalation",
            "initial_access",
        ],
    ),
    ("T1080", "Taint Shared Content", &["lateral_movement"]),
    ("T1082", "System Information Discovery", &["discovery"]),
    ("T1083", "File and Directory Discovery", &["discovery"]),
    ("T1087", "Account Discovery", &["discovery"]),
    ("T1090", "Proxy", &["command_and_control"]),
    ("T1095", "Non-Application Layer Protocol", &["command_and_control"]),
    (
        "T1098",
        "Account Manipulation",
        &["persistence", "privilege_escalation"],
    ),
    ("T1102", "Web Service", &["command_and_control"]),
    ("T1104", "Multi-Stage Channels", &["command_and_control"]),
    ("T1105", "Ingress Tool Transfer", &["command_and_control"]),
    ("T1106", "Native API", &["execution"]),
    ("T1110", "Brute Force", &["credential_access"]),
    (
        "T1111",
        "Multi-Factor Authentication Interception",
        &["credential_access"],
    ),
    ("T1112", "Modify Registry", &["defense_evasion"]),
    ("T1113", "Screen Capture", &["collection"]),
    ("T1115", "Clipboard Data", &["collection"]),
    ("T1119", "Automated Collection", &["collection"]),
    ("T1120", "Peripheral Device Discovery", &["discovery"]),
    ("T1124", "System Time Discovery", &["discovery"]),
    ("T1129", "Shared Modules", &["execution"]),
    ("T1132", "Data Encoding", &["command_and_control"]),
    ("T1133", "External Remote Services", &["persistence", "initial_access"]),
    (
        "T1134",
        "Access Token Manipulation",
        &["defense_evasion", "privilege_escalation"],
    ),
    ("T1135", "Network Share Discovery", &["discovery"]),
    ("T1136", "Create Account", &["persistence"]),
    ("T1140", "Deobfuscate/Decode Files or Information", &["defense_evasion"]),
    ("T1176", "Browser Extensions", &["persistence"]),
    ("T1185", "Browser Session Hijacking", &["collection"]),
    ("T1187", "Forced Authentication", &["credential_access"]),
    ("T1189", "Drive-by Compromise", &["initial_access"]),
    ("T1190", "Exploit Public-Facing Application", &["initial_access"]),
    ("T1195", "Supply Chain Compromise", &["initial_access"]),
    ("T1199", "Trusted Relationship", &["initial_access"]),
    ("T1200", "Hardware Additions", &["initial_access"]),
    ("T1201", "Password Policy Discovery", &["discovery"]),
    ("T1202", "Indirect Command Execution", &["defense_evasion"]),
    ("T1203", "Exploitation for Client Execution", &["execution"]),
    ("T1204", "User Execution", &["execution"]),
    (
        "T1205",
        "Traffic Signaling",
        &["defense_evasion", "persistence", "command_and_control"],
    ),
    ("T1210", "Exploitation of Remote Services", &["lateral_movement"]),
    ("T1211", "Exploitation for Defense Evasion", &["defense_evasion"]),
    ("T1212", "Exploitation for Credential Access", &["credential_access"]),
    ("T1213", "Data from Information Repositories", &["collection"]),
    ("T1217", "Browser Information Discovery", &["discovery"]),
    ("T1218", "System Binary Proxy Execution", &["defense_evasion"]),
    ("T1219", "Remote Access Software", &["command_and_control"]),
    (
        "T1222",
        "File and Directory Permissions Modification",
        &["defense_evasion"],
    ),
    ("T1480", "Execution Guardrails", &["defense_evasion"]),
    ("T1482", "Domain Trust Discovery", &["discovery"]),
    (
        "T1484",
        "Domain or Tenant Policy Modification",
        &["defense_evasion", "privilege_escalation"],
    ),
    ("T1485", "Data Destruction", &["impact"]),
    ("T1486", "Data Encrypted for Impact", &["impact"]),
    ("T1489", "Service Stop", &["impact"]),
    ("T1490", "Inhibit System Recovery", &["impact"]),
    ("T1491", "Defacement", &["impact"]),
    ("T1495", "Firmware Corruption", &["impact"]),
    ("T1496", "Resource Hijacking", &["impact"]),
    (
        "T1497",
        "Virtualization/Sandbox Evasion",
        &["defense_evasion", "discovery"],
    ),
    ("T1498", "Network Denial of Service", &["impact"]),
    ("T1499", "Endpoint Denial of Service", &["impact"]),
    ("T1505", "Server Software Component", &["persistence"]),
    ("T1518", "Software Discovery", &["discovery"]),
    ("T1525", "Implant Internal Image", &["persistence"]),
    ("T1526", "Cloud Service Discovery", &["discovery"]),
    ("T1528", "Steal Application Access Token", &["credential_access"]),
    ("T1529", "System Shutdown/Reboot", &["impact"]),
    ("T1530", "Data from Cloud Storage", &["collection"]),
    ("T1531", "Account Access Removal", &["impact"]),
    ("T1534", "Internal Spearphishing", &["lateral_movement"]),
    ("T1535", "Unused/Unsupported Cloud Regions", &["defense_evasion"]),
    ("T1537", "Transfer Data to Cloud Account", &["exfiltration"]),
    ("T1538", "Cloud Service Dashboard", &["discovery"]),
    ("T1539", "Steal Web Session Cookie", &["credential_access"]),
    ("T1542", "Pre-OS Boot", &["defense_evasion", "persistence"]),
    (
        "T1543",
        "Create or Modify System Process",
        &["persistence", "privilege_escalation"],
    ),
    (
        "T1546",
        "Event Triggered Execution",
        &["privilege_escalation", "persistence"],
    ),
    (
        "T1547",
        "Boot or Logon Autostart Execution",
        &["persistence", "privilege_escalation"],
    ),
    (
        "T1548",
        "Abuse Elevation Control Mechanism",
        &["privilege_escalation", "defense_evasion"],
    ),
    (
        "T1550",
        "Use Alternate Authentication Material",
        &["defense_evasion", "lateral_movement"],
    ),
    ("T1552", "Unsecured Credentials", &["credential_access"]),
    ("T1553", "Subvert Trust Controls", &["defense_evasion"]),
    ("T1554", "Compromise Host Software Binary", &["persistence"]),
    ("T1555", "Credentials from Password Stores", &["credential_access"]),
    (
        "T1556",
        "Modify Authentication Process",
        &["credential_access", "defense_evasion", "persistence"],
    ),
    ("T1557", "Adversary-in-the-Middle", &["credential_access", "collection"]),
    ("T1558", "Steal or Forge Kerberos Tickets", &["credential_access"]),
    ("T1559", "Inter-Process Communication", &["execution"]),
    ("T1560", "Archive Collected Data", &["collection"]),
    ("T1561", "Disk Wipe", &["impact"]),
    ("T1562", "Impair Defenses", &["defense_evasion"]),
    ("T1563", "Remote Service Session Hijacking", &["lateral_movement"]),
    ("T1564", "Hide Artifacts", &["defense_evasion"]),
    ("T1565", "Data Manipulation", &["impact"]),
    ("T1566", "Phishing", &["initial_access"]),
    ("T1567", "Exfiltration Over Web Service", &["exfiltration"]),
    ("T1568", "Dynamic Resolution", &["command_and_control"]),
    ("T1569", "System Services", &["execution"]),
    ("T1570", "Lateral Tool Transfer", &["lateral_movement"]),
    ("T1571", "Non-Standard Port", &["command_and_control"]),
    ("T1572", "Protocol Tunneling", &["command_and_control"]),
    ("T1573", "Encrypted Channel", &["command_and_control"]),
    (
        "T1574",
        "Hijack Execution Flow",
        &["persistence", "privilege_escalation", "defense_evasion"],
    ),
    ("T1578", "Modify Cloud Compute Infrastructure", &["defense_evasion"]),
    ("T1580", "Cloud Infrastructure Discovery", &["discovery"]),
    ("T1583", "Acquire Infrastructure", &["resource_development"]),
    ("T1584", "Compromise Infrastructure", &["resource_development"]),
    ("T1585", "Establish Accounts", &["resource_development"]),
    ("T1586", "Compromise Accounts", &["resource_development"]),
    ("T1587", "Develop Capabilities", &["resource_development"]),
    ("T1588", "Obtain Capabilities", &["resource_development"]),
    ("T1589", "Gather Victim Identity Information", &["reconnaissance"]),
    ("T1590", "Gather Victim Network Information", &["reconnaissance"]),
    ("T1591", "Gather Victim Org Information", &["reconnaissance"]),
    ("T1592", "Gather Victim Host Information", &["reconnaissance"]),
    ("T1595", "Active Scanning", &["reconnaissance"]),
    ("T1598", "Phishing for Information", &["reconnaissance"]),
    ("T1599", "Network Boundary Bridging", &["defense_evasion"]),
    ("T1600", "Weaken Encryption", &["defense_evasion"]),
    ("T1601", "Modify System Image", &["defense_evasion"]),
    ("T1602", "Data from Configuration Repository", &["collection"]),
    ("T1606", "Forge Web Credentials", &["credential_access"]),
    ("T1608", "Stage Capabilities", &["resource_development"]),
    ("T1609", "Container Administration Command", &["execution"]),
    ("T1610", "Deploy Container", &["defense_evasion", "execution"]),
    ("T1611", "Escape to Host", &["privilege_escalation"]),
    ("T1612", "Build Image on Host", &["defense_evasion"]),
    ("T1613", "Container and Resource Discovery", &["discovery"]),
    ("T1614", "System Location Discovery", &["discovery"]),
    ("T1619", "Cloud Storage Object Discovery", &["discovery"]),
    ("T1620", "Reflective Code Loading", &["defense_evasion"]),
    (
        "T1621",
        "Multi-Factor Authentication Request Generation",
        &["credential_access"],
    ),
    ("T1622", "Debugger Evasion", &["defense_evasion", "discovery"]),
    ("T1648", "Serverless Execution", &["execution"]),
    (
        "T1649",
        "Steal or Forge Authentication Certificates",
        &["credential_access"],
    ),
    ("T1651", "Cloud Administration Command", &["execution"]),
    ("T1652", "Device Driver Discovery", &["discovery"]),
    ("T1654", "Log Enumeration", &["discovery"]),
    ("T1656", "Impersonation", &["defense_evasion"]),
    ("T1657", "Financial Theft", &["impact"]),
];

/// The tactics of ATT&CK Enterprise, as `mitre_*` suffixes.
pub const TACTICS: &[&str] = &[
    "reconnaissance",
    "resource_development",
    "initial_access",
    "execution",
    "persistence",
    "privilege_escalation",
    "defense_evasion",
    "credential_access",
    "discovery",
    "lateral_movement",
    "collection",
    "command_and_control",
    "exfiltration",
    "impact",
];

/// A technique's name and tactics; a sub-technique (`T1059.004`) is looked up by its parent.
pub fn technique(id: &str) -> Option<(&'static str, &'static [&'static str])> {
    let parent = id.split('.').next().unwrap_or(id).to_ascii_uppercase();
    TECHNIQUES
        .binary_search_by(|(candidate, _, _)| candidate.cmp(&parent.as_str()))
        .ok()
        .map(|index| (TECHNIQUES[index].1, TECHNIQUES[index].2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_uses_known_tactics() {
        assert!(
            TECHNIQUES.windows(2).all(|w| w[0].0 < w[1].0),
            "binary search needs order"
        );
        for (id, _, tactics) in TECHNIQUES {
            assert!(!tactics.is_empty(), "{id}");
            assert!(tactics.iter().all(|t| TACTICS.contains(t)), "{id}");
        }
    }

    #[test]
    fn the_seed_004_techniques() {
        assert_eq!(technique("T1529"), Some(("System Shutdown/Reboot", &["impact"][..])));
        assert_eq!(technique("T1538").unwrap().1, &["discovery"]);
        assert_eq!(technique("t1059.004").unwrap().0, "Command and Scripting Interpreter");
        assert_eq!(technique("T9999"), None);
    }
}
