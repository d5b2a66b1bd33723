-- The proxy database, table layout of slapos.core's proxy schema version 18, so that
-- either implementation can open the other's file. Our own additions (indexes) are
-- tracked by PRAGMA user_version, which upstream never reads.
CREATE TABLE IF NOT EXISTS config18 (
  name TEXT PRIMARY KEY,
  value TEXT
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS software18 (
  url VARCHAR(255),
  computer_reference VARCHAR(255) DEFAULT '',
  requested_state VARCHAR(255) DEFAULT 'available',
  PRIMARY KEY (url, computer_reference)
);

CREATE TABLE IF NOT EXISTS computer18 (
  reference VARCHAR(255) DEFAULT '',
  address VARCHAR(255),
  netmask VARCHAR(255),
  PRIMARY KEY (reference)
);

-- requested_by: title of the root of the instance tree ('' for a root);
-- requester_id: reference of the partition that directly requested it (or 'user').
CREATE TABLE IF NOT EXISTS partition18 (
  reference VARCHAR(255),
  computer_reference VARCHAR(255) DEFAULT '',
  slap_state VARCHAR(255) DEFAULT 'free',
  software_release VARCHAR(255),
  xml TEXT,
  connection_xml TEXT,
  slave_instance_list TEXT,
  software_type VARCHAR(255),
  partition_reference VARCHAR(255),
  requested_by VARCHAR(255) NOT NULL DEFAULT '',
  requester_id VARCHAR(255) NOT NULL DEFAULT '',
  requested_state VARCHAR(255) NOT NULL DEFAULT 'started',
  timestamp REAL,
  PRIMARY KEY (reference, computer_reference)
);

-- reference: '<tree root title>_<title>'.
CREATE TABLE IF NOT EXISTS slave18 (
  reference VARCHAR(255),
  computer_reference VARCHAR(255) DEFAULT '',
  connection_xml TEXT,
  hosted_by VARCHAR(255),
  requester_id VARCHAR(255) NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS partition_network18 (
  partition_reference VARCHAR(255),
  computer_reference VARCHAR(255) DEFAULT '',
  reference VARCHAR(255),
  address VARCHAR(255),
  netmask VARCHAR(255)
);

CREATE TABLE IF NOT EXISTS forwarded_partition_request18 (
  partition_reference VARCHAR(255),
  master_url VARCHAR(255),
  PRIMARY KEY (partition_reference, master_url)
);
