//! The schemas shipped inside the binary (copies of `fixtures/schemas`), so
//! OAI-PMH and Dublin Core validate from any working directory and never
//! reach for the network.
//!
//! Depends on nothing.

/// One schema document compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct BundledSchema {
    /// The file name, as `xs:import`/`xs:include` name it.
    pub file_name: &'static str,
    /// The `targetNamespace` of the document (empty for none).
    pub namespace: &'static str,
    pub document: &'static [u8],
}

/// Every bundled schema.
pub const BUNDLED: &[BundledSchema] = &[
    BundledSchema {
        file_name: "OAI-PMH.xsd",
        namespace: "http://www.openarchives.org/OAI/2.0/",
        document: include_bytes!("../../../fixtures/schemas/OAI-PMH.xsd"),
    },
    BundledSchema {
        file_name: "oai_dc.xsd",
        namespace: OAI_DC_NAMESPACE,
        document: include_bytes!("../../../fixtures/schemas/oai_dc.xsd"),
    },
    BundledSchema {
        file_name: "simpledc20021212.xsd",
        namespace: "http://purl.org/dc/elements/1.1/",
        document: include_bytes!("../../../fixtures/schemas/simpledc20021212.xsd"),
    },
    BundledSchema {
        file_name: "xml.xsd",
        namespace: "http://www.w3.org/XML/1998/namespace",
        document: include_bytes!("../../../fixtures/schemas/xml.xsd"),
    },
    // A driver without a namespace of its own: the OAI-PMH envelope plus
    // oai_dc, for validating responses that carry oai_dc records (the
    // envelope's metadata wildcard is strict, so OAI-PMH.xsd alone rejects
    // every record it cannot find a declaration for).
    BundledSchema {
        file_name: "oai_dc-envelope.xsd",
        namespace: "",
        document: include_bytes!("../../../fixtures/schemas/oai_dc-envelope.xsd"),
    },
];

/// The namespace of OAI Dublin Core records.
pub const OAI_DC_NAMESPACE: &str = "http://www.openarchives.org/OAI/2.0/oai_dc/";

/// The bundled schema with this file name.
pub fn by_file_name(name: &str) -> Option<&'static BundledSchema> {
    BUNDLED.iter().find(|b| b.file_name == name)
}

/// The bundled schema with this target namespace.
pub fn by_namespace(namespace: &str) -> Option<&'static BundledSchema> {
    BUNDLED
        .iter()
        .find(|b| !b.namespace.is_empty() && b.namespace == namespace)
}
