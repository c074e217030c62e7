#include "spatial_correlation/spatial_correlation_plugin.h"

#include "common/checks.h"
#include "common/logging.h"
#include "common/plugin_names.h"
#include "common/tensor_checks.h"
#include "spatial_correlation/spatial_correlation_kernel.h"

#include <memory>

using namespace nvinfer1;

namespace semshare::plugin
{
namespace
{
constexpr char const* kName = "SpatialCorrelation";
constexpr int32_t kMaxPatchSize = 31;

kernels::CorrelationShape correlationShape(SpatialCorrelationParams const& params, Dims const& x1)
{
    kernels::CorrelationShape shape{};
    shape.batch = static_cast<int>(x1.d[0]);
    shape.channels = static_cast<int>(x1.d[1]);
    shape.height = static_cast<int>(x1.d[2]);
    shape.width = static_cast<int>(x1.d[3]);
    shape.patchSize = params.patchSize;
    shape.dilationPatch = params.dilationPatch;
    shape.normalize = params.normalize != 0;
    return shape;
}
} // namespace

SpatialCorrelationParams SpatialCorrelationParams::fromFields(PluginFieldCollection const* fc)
{
    FieldReader const fields(kName, fc, {"patch_size", "kernel_size", "stride", "dilation_patch", "normalize"});
    SpatialCorrelationParams params;
    params.patchSize = fields.getInt("patch_size", params.patchSize);
    params.kernelSize = fields.getInt("kernel_size", params.kernelSize);
    params.stride = fields.getInt("stride", params.stride);
    params.dilationPatch = fields.getInt("dilation_patch", params.dilationPatch);
    params.normalize = fields.getInt("normalize", params.normalize);
    params.validate();
    return params;
}

void SpatialCorrelationParams::validate() const
{
    SEMSHARE_CHECK(patchSize >= 1 && patchSize % 2 == 1 && patchSize <= kMaxPatchSize,
        std::string(kName) + ": patch_size must be odd, 1.." + std::to_string(kMaxPatchSize) + ", got "
            + std::to_string(patchSize));
    SEMSHARE_CHECK(kernelSize == 1,
        std::string(kName) + ": kernel_size must be 1 in version 1, got " + std::to_string(kernelSize));
    SEMSHARE_CHECK(stride == 1, std::string(kName) + ": stride must be 1 in version 1, got " + std::to_string(stride));
    SEMSHARE_CHECK(dilationPatch >= 1,
        std::string(kName) + ": dilation_patch must be >= 1, got " + std::to_string(dilationPatch));
    SEMSHARE_CHECK(normalize == 0 || normalize == 1,
        std::string(kName) + ": normalize must be 0 or 1, got " + std::to_string(normalize));
}

SpatialCorrelationPlugin::SpatialCorrelationPlugin(SpatialCorrelationParams const& params)
    : mParams(params)
{
    mParams.validate();
}

SpatialCorrelationPlugin::SpatialCorrelationPlugin(SpatialCorrelationPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mParams(other.mParams)
{
}

IPluginCapability* SpatialCorrelationPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* SpatialCorrelationPlugin::clone() noexcept
{
    return guarded<IPluginV3*>("SpatialCorrelation::clone", nullptr,
        [&]() -> IPluginV3* { return std::make_unique<SpatialCorrelationPlugin>(*this).release(); });
}

char const* SpatialCorrelationPlugin::getPluginName() const noexcept
{
    return kName;
}

char const* SpatialCorrelationPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SpatialCorrelationPlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

int32_t SpatialCorrelationPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t SpatialCorrelationPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>("SpatialCorrelation::configurePlugin", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(in != nullptr && out != nullptr && nbInputs == 2 && nbOutputs == 1,
            "SpatialCorrelation takes 2 inputs (x1, x2) and has 1 output");
        Dims const& a = in[0].desc.dims;
        Dims const& b = in[1].desc.dims;
        SEMSHARE_CHECK(a.nbDims == 4 && b.nbDims == 4,
            "SpatialCorrelation inputs must be (B, C, H, W), got " + dimsToString(a) + " and " + dimsToString(b));
        for (int32_t i = 0; i < 4; ++i)
        {
            SEMSHARE_CHECK(extentsAgree(a.d[i], b.d[i]),
                "SpatialCorrelation x1 and x2 must have the same shape, got " + dimsToString(a) + " and "
                    + dimsToString(b));
        }
        return 0;
    });
}

int32_t SpatialCorrelationPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guarded<int32_t>("SpatialCorrelation::getOutputDataTypes", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(outputTypes != nullptr && inputTypes != nullptr && nbInputs == 2 && nbOutputs == 1,
            "SpatialCorrelation takes 2 inputs (x1, x2) and has 1 output");
        SEMSHARE_CHECK(isFloatOrHalf(inputTypes[0]) && inputTypes[1] == inputTypes[0],
            "SpatialCorrelation inputs must both be FLOAT or both HALF, got " + dataTypeName(inputTypes[0]) + " and "
                + dataTypeName(inputTypes[1]));
        outputTypes[0] = inputTypes[0];
        return 0;
    });
}

int32_t SpatialCorrelationPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    return guarded<int32_t>("SpatialCorrelation::getOutputShapes", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(inputs != nullptr && outputs != nullptr && nbInputs == 2 && nbOutputs == 1,
            "SpatialCorrelation takes 2 inputs (x1, x2) and has 1 output");
        SEMSHARE_CHECK(inputs[0].nbDims == 4 && inputs[1].nbDims == 4,
            "SpatialCorrelation inputs must be 4-D (B, C, H, W), got ranks " + std::to_string(inputs[0].nbDims)
                + " and " + std::to_string(inputs[1].nbDims));
        IDimensionExpr const* displacements = exprBuilder.constant(mParams.patchSize * mParams.patchSize);
        SEMSHARE_CHECK(displacements != nullptr, "SpatialCorrelation: IExprBuilder::constant failed");
        outputs[0].nbDims = 4;
        outputs[0].d[0] = inputs[0].d[0];
        outputs[0].d[1] = displacements;
        outputs[0].d[2] = inputs[0].d[2];
        outputs[0].d[3] = inputs[0].d[3];
        return 0;
    });
}

bool SpatialCorrelationPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return guarded<bool>("SpatialCorrelation::supportsFormatCombination", false, [&]() -> bool {
        SEMSHARE_CHECK(inOut != nullptr && nbInputs == 2 && nbOutputs == 1 && pos >= 0 && pos < 3,
            "SpatialCorrelation: bad supportsFormatCombination query (pos " + std::to_string(pos) + ")");
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != TensorFormat::kLINEAR)
        {
            return false;
        }
        if (pos == 0)
        {
            return isFloatOrHalf(desc.type);
        }
        return desc.type == inOut[0].desc.type;
    });
}

int32_t SpatialCorrelationPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded<int32_t>("SpatialCorrelation::onShapeChange", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(in != nullptr && out != nullptr && nbInputs == 2 && nbOutputs == 1,
            "SpatialCorrelation takes 2 inputs (x1, x2) and has 1 output");
        Dims const& a = in[0].dims;
        Dims const& b = in[1].dims;
        SEMSHARE_CHECK(a.nbDims == 4 && b.nbDims == 4 && a.d[0] == b.d[0] && a.d[1] == b.d[1] && a.d[2] == b.d[2]
                && a.d[3] == b.d[3],
            "SpatialCorrelation x1 and x2 must have the same (B, C, H, W) shape, got " + dimsToString(a) + " and "
                + dimsToString(b));
        SEMSHARE_CHECK(a.d[1] >= 1, "SpatialCorrelation needs at least one channel");
        return 0;
    });
}

int32_t SpatialCorrelationPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    return guarded<int32_t>("SpatialCorrelation::enqueue", -1, [&]() -> int32_t {
        SEMSHARE_CHECK(inputDesc != nullptr && inputs != nullptr && outputs != nullptr,
            "SpatialCorrelation::enqueue: null descriptors or buffers");
        kernels::CorrelationShape const shape = correlationShape(mParams, inputDesc[0].dims);
        if (mMultiProcessors == 0)
        {
            cudaError_t const query = kernels::currentMultiProcessorCount(mMultiProcessors);
            SEMSHARE_CHECK(query == cudaSuccess,
                std::string("SpatialCorrelation: could not query the SM count: ") + cudaGetErrorString(query));
        }
        cudaError_t status = cudaErrorInvalidValue;
        if (inputDesc[0].type == DataType::kFLOAT)
        {
            status = kernels::launchSpatialCorrelation(static_cast<float const*>(inputs[0]),
                static_cast<float const*>(inputs[1]), static_cast<float*>(outputs[0]), shape, mMultiProcessors,
                stream);
        }
        else if (inputDesc[0].type == DataType::kHALF)
        {
            status = kernels::launchSpatialCorrelation(static_cast<__half const*>(inputs[0]),
                static_cast<__half const*>(inputs[1]), static_cast<__half*>(outputs[0]), shape, mMultiProcessors,
                stream);
        }
        SEMSHARE_CHECK(status == cudaSuccess,
            std::string("SpatialCorrelation kernel launch failed: ") + cudaGetErrorString(status));
        return 0;
    });
}

IPluginV3* SpatialCorrelationPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* SpatialCorrelationPlugin::getFieldsToSerialize() noexcept
{
    return guarded<PluginFieldCollection const*>(
        "SpatialCorrelation::getFieldsToSerialize", nullptr, [&]() -> PluginFieldCollection const* {
            mSerialized.clear();
            mSerialized.addInt("patch_size", mParams.patchSize);
            mSerialized.addInt("kernel_size", mParams.kernelSize);
            mSerialized.addInt("stride", mParams.stride);
            mSerialized.addInt("dilation_patch", mParams.dilationPatch);
            mSerialized.addInt("normalize", mParams.normalize);
            return mSerialized.collection();
        });
}

SpatialCorrelationCreator::SpatialCorrelationCreator()
    : mFieldNames({{"patch_size", PluginFieldType::kINT32}, {"kernel_size", PluginFieldType::kINT32},
        {"stride", PluginFieldType::kINT32}, {"dilation_patch", PluginFieldType::kINT32},
        {"normalize", PluginFieldType::kINT32}})
{
}

IPluginV3* SpatialCorrelationCreator::createPlugin(
    char const* /*name*/, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    return guarded<IPluginV3*>("SpatialCorrelation::createPlugin", nullptr, [&]() -> IPluginV3* {
        return std::make_unique<SpatialCorrelationPlugin>(SpatialCorrelationParams::fromFields(fc)).release();
    });
}

PluginFieldCollection const* SpatialCorrelationCreator::getFieldNames() noexcept
{
    return mFieldNames.collection();
}

char const* SpatialCorrelationCreator::getPluginName() const noexcept
{
    return kName;
}

char const* SpatialCorrelationCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SpatialCorrelationCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

} // namespace semshare::plugin
